//! A file-driven network partition for end-to-end tests of whole daemons.
//!
//! When `PGWARDEN_TEST_PARTITION_FILE` names a file, each line of it is a peer address
//! (`host:port`) that is cut off: a node listed there sends nothing to anybody, and nobody
//! sends to it. The file is re-read on every call, so a test cuts and heals links by
//! rewriting it. The daemon logs a warning at start when this is active; production
//! configurations never set the variable.

use crate::network::LinkFilter;
use crate::NodeId;
use std::path::PathBuf;

/// The environment variable that turns the partition hook on.
pub const ENV: &str = "PGWARDEN_TEST_PARTITION_FILE";

/// Cuts the addresses listed in a file.
pub struct FilePartition {
    file: PathBuf,
    my_addr: String,
}

impl FilePartition {
    /// The hook for a node advertising `my_addr`, if the environment asks for it.
    pub fn from_env(my_addr: &str) -> Option<Self> {
        let file = std::env::var_os(ENV)?;
        Some(FilePartition {
            file: file.into(),
            my_addr: my_addr.to_string(),
        })
    }

    fn cut(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .map(|s| {
                s.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl LinkFilter for FilePartition {
    fn allows(&self, _from: NodeId, _to: NodeId, to_addr: &str) -> bool {
        let cut = self.cut();
        !cut.iter().any(|a| *a == self.my_addr || a == to_addr)
    }
}
