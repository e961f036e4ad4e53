//! The sled store against openraft's storage conformance suite, plus pgwarden's own
//! rules: corrupt or unopenable stores stop the node with a message naming the directory.

use openraft::testing::{StoreBuilder, Suite};
use pgwarden_raft::log_store::{LogStore, SledStore, StoreError};
use pgwarden_raft::state_machine::StateMachineStore;
use pgwarden_raft::{StorageError, TypeConfig};
use tempfile::TempDir;

struct Builder;

/// Runs `open` until it does not fail on sled's directory lock. sled releases that lock
/// from a background thread some time after the last handle is dropped, so an open just
/// after a drop can fail with "could not acquire lock"; any other outcome is returned.
fn open_after_drop<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> Result<T, E> {
    for _ in 0..100 {
        match open() {
            Err(e) if format!("{e:?}").contains("acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
    open()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open store");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = StateMachineStore::open(store.snapshot_store(), tx)?;
        Ok((dir, store.log_store(), sm))
    }
}

/// openraft's `Suite::test_all` passes on the sled log store and our state machine.
#[test]
fn sled_store_passes_openraft_conformance_suite() {
    Suite::test_all(Builder).expect("conformance suite");
}

/// A record that does not decode is reported as corruption naming the directory and the
/// record, and the store is not opened (never silently replaced by an empty one).
#[test]
fn corrupt_log_entry_refuses_to_open_and_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("raft_log")
            .unwrap()
            .insert(7u64.to_be_bytes(), b"not json".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let err = match open_after_drop(|| SledStore::open(dir.path())) {
        Err(e) => e,
        Ok(_) => panic!("a corrupt store opened"),
    };
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("log entry 7"),
        "{msg}"
    );
    drop(err);
    // Nothing was deleted: the bad record is still there for a person to look at.
    let db = open_after_drop(|| sled::open(dir.path())).unwrap();
    assert!(db
        .open_tree("raft_log")
        .unwrap()
        .get(7u64.to_be_bytes())
        .unwrap()
        .is_some());
}

/// A data directory that is a regular file cannot be opened; the error names it.
#[test]
fn unopenable_store_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = match SledStore::open(&file) {
        Err(e) => e,
        Ok(_) => panic!("opened a file as a store"),
    };
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
}

/// The node id is created once and kept: reopening gives the same id.
#[test]
fn node_id_is_persistent() {
    let dir = tempfile::tempdir().unwrap();
    let a = SledStore::open(dir.path()).unwrap().node_id().unwrap();
    let b = open_after_drop(|| SledStore::open(dir.path()))
        .unwrap()
        .node_id()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, 0);
}

mod snapshot_file {
    use super::open_after_drop;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
    use pgwarden_raft::log_store::{SledStore, StoreError, StoredSnapshot, SNAPSHOT_DIR};
    use pgwarden_raft::state_machine::StateMachineStore;
    use pgwarden_raft::{Command, Condition, LogId, Proposal, TypeConfig};
    use std::path::Path;

    /// sled 0.34 writes a record over `segment_size / 4` minus a segment header (512 KiB
    /// by default) to an unsynced blob file.
    const SLED_BLOB_THRESHOLD: usize = 512 * 1024 / 4 - 20;

    /// A member key as the daemon writes it, with every field a streaming replica sets.
    fn member(i: usize) -> Command {
        let value = format!(
            concat!(
                r#"{{"conn_url":"postgres://10.20.{}.{}:5432/postgres","#,
                r#""api_url":"http://10.20.{}.{}:8008/patroni","state":"running","#,
                r#""role":"replica","version":"0.1.0","xlog_location":123456789012,"#,
                r#""receive_lsn":123456789012,"replay_lsn":123456780000,"#,
                r#""replication_state":"streaming","timeline":7,"#,
                r#""tags":{{"clonefrom":true}},"dcs_last_seen":1750000000}}"#
            ),
            i / 256,
            i % 256,
            i / 256,
            i % 256
        );
        Command::Put {
            key: format!("/service/batman/members/node-{i:04}"),
            value,
            ttl_ms: Some(30_000),
            condition: Condition::Always,
        }
    }

    /// Applies `n` member writes (log indexes 1..=n) and builds a snapshot.
    async fn snapshot_with_members(store: &SledStore, n: usize) -> StoredSnapshot {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sm = StateMachineStore::open(store.snapshot_store(), tx).unwrap();
        let entries: Vec<openraft::Entry<TypeConfig>> = (1..=n)
            .map(|i| openraft::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64),
                payload: EntryPayload::Normal(Proposal::One(member(i))),
            })
            .collect();
        sm.apply(entries).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        store.snapshot_store().load().unwrap().unwrap()
    }

    fn snapshot_files(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join(SNAPSHOT_DIR))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v
    }

    fn raw_snapshot_record(dir: &Path) -> Vec<u8> {
        let db = open_after_drop(|| sled::open(dir)).unwrap();
        let v = db
            .open_tree("sm_snapshot")
            .unwrap()
            .get(b"current")
            .unwrap()
            .unwrap();
        v.to_vec()
    }

    /// F10: with 1,000 members the old record (the snapshot as one JSON record in sled,
    /// data as an array of numbers) is far over sled's unsynced-blob threshold; now the
    /// data is a file of the keyspace's own bytes and sled's record is a small pointer.
    #[tokio::test]
    async fn safety_f10_snapshot_size_with_1000_members() {
        let dir = tempfile::tempdir().unwrap();
        let snap = {
            let store = open_after_drop(|| SledStore::open(dir.path())).unwrap();
            snapshot_with_members(&store, 1000).await
        };
        let old_record = serde_json::to_vec(&snap).unwrap().len();
        let files = snapshot_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let file_len = files[0].1;
        let pointer = raw_snapshot_record(dir.path()).len();
        println!(
            "1000 members: old inline record {old_record} bytes; snapshot file {file_len} bytes; \
             pointer record in sled {pointer} bytes"
        );
        assert_eq!(file_len, snap.data.len() as u64);
        assert!(old_record > SLED_BLOB_THRESHOLD, "the old record was a blob");
        assert!(old_record as u64 > 3 * file_len, "{old_record} vs {file_len}");
        assert!(
            pointer < 4096,
            "the pointer stays far below the blob threshold: {pointer}"
        );
    }

    /// F10: a store whose snapshot was written the old way (inline JSON record in sled)
    /// opens, its snapshot reads back unchanged and restores the keyspace, and it is
    /// moved into a file with a pointer left in sled.
    #[tokio::test]
    async fn safety_f10_old_inline_snapshot_is_read_and_moved_to_a_file() {
        let src = tempfile::tempdir().unwrap();
        let snap = {
            let store = SledStore::open(src.path()).unwrap();
            snapshot_with_members(&store, 20).await
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_after_drop(|| sled::open(dir.path())).unwrap();
            db.open_tree("sm_snapshot")
                .unwrap()
                .insert(b"current", serde_json::to_vec(&snap).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let store = open_after_drop(|| SledStore::open(dir.path())).unwrap();
            assert!(!store.is_fresh());
            let loaded = store.snapshot_store().load().unwrap().unwrap();
            assert_eq!(loaded.meta, snap.meta);
            assert_eq!(loaded.data, snap.data);
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let sm = StateMachineStore::open(store.snapshot_store(), tx).unwrap();
            let kv = sm.shared().get("/service/batman/members/node-0007").unwrap();
            assert_eq!(kv.mod_revision, 7);
            assert_eq!(sm.shared().applied_index(), 20);
        }
        let record = raw_snapshot_record(dir.path());
        assert!(
            record.len() < 4096,
            "a pointer, not the snapshot: {} bytes",
            record.len()
        );
        assert!(!String::from_utf8_lossy(&record).contains("\"data\""));
        assert_eq!(snapshot_files(dir.path()).len(), 1);
    }

    /// F10: each save takes a new file and removes the previous one; a file no pointer
    /// names (a crash during a save) is removed at open.
    #[tokio::test]
    async fn safety_f10_snapshot_files_are_replaced_and_strays_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_after_drop(|| SledStore::open(dir.path())).unwrap();
            snapshot_with_members(&store, 3).await;
            let first = snapshot_files(dir.path());
            snapshot_with_members(&store, 5).await;
            let second = snapshot_files(dir.path());
            assert_eq!(first.len(), 1);
            assert_eq!(second.len(), 1);
            assert_ne!(first[0].0, second[0].0);
        }
        let kept = snapshot_files(dir.path());
        std::fs::write(dir.path().join(SNAPSHOT_DIR).join("snapshot-99.tmp"), b"torn").unwrap();
        std::fs::write(
            dir.path()
                .join(SNAPSHOT_DIR)
                .join("snapshot-00000000000000000099"),
            b"x",
        )
        .unwrap();
        let store = open_after_drop(|| SledStore::open(dir.path())).unwrap();
        assert_eq!(snapshot_files(dir.path()), kept);
        assert_eq!(
            store
                .snapshot_store()
                .load()
                .unwrap()
                .unwrap()
                .meta
                .last_log_id
                .unwrap()
                .index,
            5
        );
    }

    /// F10: a snapshot file that is short or damaged stops the open with a message naming
    /// the file, instead of starting from a wrong keyspace.
    #[tokio::test]
    async fn safety_f10_damaged_snapshot_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_after_drop(|| SledStore::open(dir.path())).unwrap();
            snapshot_with_members(&store, 3).await;
        }
        let (name, len) = snapshot_files(dir.path()).remove(0);
        let path = dir.path().join(SNAPSHOT_DIR).join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(len / 2) as usize] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let err = match open_after_drop(|| SledStore::open(dir.path())) {
            Err(e) => e,
            Ok(_) => panic!("a damaged snapshot file opened"),
        };
        assert!(matches!(err, StoreError::SnapshotFile { .. }), "{err:?}");
        assert!(err.to_string().contains(&name), "{err}");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            open_after_drop(|| SledStore::open(dir.path())),
            Err(StoreError::SnapshotFile { .. })
        ));
    }
}
