//! `dcs get|status|put|delete|snapshot save`: the embedded DCS itself, as etcdctl serves
//! an etcd cluster. Reads are read-only; a raw write needs `--force` and says why not.

use super::Result;
use crate::ctl::cli::{DcsAction, SnapshotAction};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::render;
use crate::pb;
use pgwarden_raft::backup::DcsBackup;
use pgwarden_raft::KeyValue;

const RAW_WRITE_WARNING: &str = "Warning: a raw DCS write bypasses the HA loop's checks (leader lease, \
     failover rules) and can break the cluster; use it only to repair what the normal commands cannot";

pub(super) async fn dcs(c: &mut Client, action: DcsAction) -> Result<()> {
    match action {
        DcsAction::Get { key, prefix, format } => {
            let keys = c
                .dcs_get(pb::DcsGetRequest {
                    key: key.unwrap_or_default(),
                    prefix,
                })
                .await?
                .into_inner();
            print!("{}", render::dcs_keys(&keys, format));
            Ok(())
        }
        DcsAction::Status { format } => {
            let s = c.dcs_status(pb::DcsStatusRequest {}).await?.into_inner();
            print!("{}", render::dcs_status(&s, format));
            Ok(())
        }
        DcsAction::Put {
            key,
            value,
            ttl,
            force,
        } => {
            refuse_unless(force, "put")?;
            eprintln!("{RAW_WRITE_WARNING}");
            let r = c
                .dcs_put(pb::DcsPutRequest {
                    key,
                    value,
                    ttl_ms: ttl.map(|s| s.saturating_mul(1000)),
                    force,
                })
                .await?;
            println!("{}", r.into_inner().message);
            Ok(())
        }
        DcsAction::Delete { key, force } => {
            refuse_unless(force, "delete")?;
            eprintln!("{RAW_WRITE_WARNING}");
            let r = c.dcs_delete(pb::DcsDeleteRequest { key, force }).await?;
            println!("{}", r.into_inner().message);
            Ok(())
        }
        DcsAction::Snapshot {
            action: SnapshotAction::Save { file, force },
        } => {
            if file.exists() && !force {
                return Err(CtlError::Usage(format!(
                    "{} exists; pass --force to overwrite it",
                    file.display()
                )));
            }
            let s = c.dcs_snapshot(pb::DcsSnapshotRequest {}).await?.into_inner();
            let backup = DcsBackup {
                scope: s.scope,
                prefix: s.prefix,
                revision: s.revision,
                taken_at: chrono::Utc::now().to_rfc3339(),
                keys: s
                    .keys
                    .into_iter()
                    .map(|k| KeyValue {
                        key: k.key,
                        value: k.value,
                        create_revision: k.create_revision,
                        mod_revision: k.mod_revision,
                        ttl_ms: k.ttl_ms,
                    })
                    .collect(),
            };
            backup
                .write(&file, force)
                .map_err(|e| CtlError::Usage(pgwarden_raft::error_chain(&e)))?;
            println!(
                "Success: saved {} keys of cluster {} at revision {} to {}",
                backup.keys.len(),
                backup.scope,
                backup.revision,
                file.display()
            );
            Ok(())
        }
    }
}

fn refuse_unless(force: bool, what: &str) -> Result<()> {
    if force {
        Ok(())
    } else {
        Err(CtlError::Usage(format!(
            "refusing a raw `dcs {what}`: it bypasses the HA loop's checks and is for repairs only; \
             repeat with --force to do it anyway"
        )))
    }
}
