//! Logical slot state files: reading a primary's `pg_replslot/<name>/state` (over SQL) and
//! installing such copies into the stopped local data directory, so a failover-capable replica
//! holds the primary's permanent logical slots (Patroni's copies for PostgreSQL < 17).

use super::clone::Upstream;
use super::datadir::sync_dir;
use super::error::{Error, Result};
use super::manager::PgManager;
use super::query::{self, SlotState};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

impl PgManager {
    /// Reads the on-disk state of the primary's logical slots named in `names`.
    pub(super) async fn read_slot_states(
        &self,
        primary: &Upstream,
        names: &[String],
    ) -> Result<Vec<SlotState>> {
        let c = self.primary_client(primary).await?;
        query::logical_slot_states(&c, self.settings.timeouts.query, names).await
    }

    /// Writes slot states read from the primary into `pg_replslot`, durably.
    pub(super) async fn write_slot_states(&self, slots: &[SlotState]) -> Result<()> {
        self.ensure_stopped("install replication slot copies")?;
        let replslot = self.data_dir().join("pg_replslot");
        for slot in slots {
            // The name becomes a directory name: only what PostgreSQL allows in slot names.
            let valid = !slot.name.is_empty()
                && slot.name.len() < 64
                && slot
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(Error::Unexpected {
                    what: "replication slot name from the primary",
                    value: slot.name.clone(),
                });
            }
            // Written beside, then renamed over any older copy, so a crash leaves either
            // the old copy or the new one (PostgreSQL ignores `*.tmp` slot directories).
            let dir = replslot.join(&slot.name);
            let tmp = replslot.join(format!("{}.tmp", slot.name));
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(Error::io("create", &tmp))?;
            self.spawner.ids.chown(&tmp)?;
            let file = tmp.join("state");
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(Error::io("create", &file))?;
                f.write_all(&slot.state).map_err(Error::io("write", &file))?;
                f.sync_all().map_err(Error::io("sync", &file))?;
            }
            self.spawner.ids.chown(&file)?;
            sync_dir(&tmp)?;
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
            }
            std::fs::rename(&tmp, &dir).map_err(Error::io("rename", &tmp))?;
            sync_dir(&dir)?;
            tracing::info!(slot = %slot.name, database = %slot.database, "installed a copy of the primary's logical slot");
        }
        sync_dir(&replslot)
    }
}
