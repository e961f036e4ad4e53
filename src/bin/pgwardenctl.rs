//! pgwardenctl, the admin CLI (placeholder until the admin API lands).
fn main() {
    eprintln!("pgwardenctl: not built yet");
    std::process::exit(2);
}
