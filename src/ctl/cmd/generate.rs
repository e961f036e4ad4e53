//! `generate man|completions`: the man page and shell completions from the clap definitions.

use super::Result;
use crate::ctl::cli::{Cli, Generate};
use crate::ctl::client::CtlError;

pub(super) fn generate(what: &Generate) -> Result<()> {
    use clap::CommandFactory;
    match what {
        Generate::Man { dir } => {
            let io = |e: std::io::Error| CtlError::Read {
                path: dir.clone(),
                source: e,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            clap_mangen::generate_to(Cli::command(), dir).map_err(io)?;
            // clap_mangen titles the text after the options "EXTRA"; ours is examples.
            let page = dir.join("pgwardenctl.1");
            let text = std::fs::read_to_string(&page).map_err(io)?;
            std::fs::write(&page, text.replace(".SH EXTRA", ".SH EXAMPLES")).map_err(io)?;
            Ok(())
        }
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "pgwardenctl", &mut std::io::stdout());
            Ok(())
        }
    }
}
