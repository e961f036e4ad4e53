//! `generate man DIR` and `generate completions SHELL`: the hidden subcommand through which the
//! packaging script asks a binary for its man pages and shell completions, so both always
//! match the binary's own clap definitions. Shared by `pgwarden` and `pgwardenctl`.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// What to generate.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Generate {
    /// Write one man page per visible command (NAME.1, NAME-SUBCOMMAND.1, ...) into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Print a completion script for SHELL on standard output.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

impl Generate {
    /// Generates for `cmd`, the binary's full clap command (`Args::command()`).
    pub fn run(&self, cmd: clap::Command) -> anyhow::Result<()> {
        match self {
            Generate::Man { dir } => {
                std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
                clap_mangen::generate_to(cmd, dir)
                    .with_context(|| format!("write man pages into {}", dir.display()))
            }
            Generate::Completions { shell } => {
                let mut cmd = cmd;
                let name = cmd.get_name().to_string();
                let mut out = Vec::new();
                clap_complete::generate(*shell, &mut cmd, name, &mut out);
                std::io::stdout()
                    .write_all(&out)
                    .context("write the completion script")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    #[command(name = "tool", about = "A test tool")]
    struct Args {
        #[command(subcommand)]
        sub: Option<Sub>,
    }
    #[derive(clap::Subcommand)]
    enum Sub {
        /// Visible.
        Run,
        #[command(hide = true, subcommand)]
        Generate(Generate),
    }

    #[test]
    fn man_pages_cover_visible_commands_and_skip_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        Generate::Man {
            dir: dir.path().join("man"),
        }
        .run(Args::command())
        .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("man"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tool-run.1", "tool.1"]);
        let page = std::fs::read_to_string(dir.path().join("man/tool.1")).unwrap();
        assert!(page.contains("A test tool"), "{page}");
    }

    #[test]
    fn the_hidden_subcommand_parses() {
        let a = Args::try_parse_from(["tool", "generate", "completions", "bash"]).unwrap();
        assert!(matches!(
            a.sub,
            Some(Sub::Generate(Generate::Completions {
                shell: clap_complete::Shell::Bash
            }))
        ));
        assert!(Args::try_parse_from(["tool", "generate", "completions", "tcsh"]).is_err());
    }
}
