//! pgwardenctl, the admin CLI: parse the command line, run, report. The commands live in
//! `pgwarden::ctl`.
use pgwarden::ctl::{chain, cli::Cli, cmd};

fn main() {
    let cli = Cli::parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGWARDENCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(cmd::run(cli)) {
        eprintln!("Error: {}", chain(&e));
        std::process::exit(1);
    }
}
