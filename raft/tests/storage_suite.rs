//! The sled store against openraft's storage conformance suite, plus pgwarden's own
//! rules: corrupt or unopenable stores stop the node with a message naming the directory.

use openraft::testing::{StoreBuilder, Suite};
use pgwarden_raft::log_store::{LogStore, SledStore, StoreError};
use pgwarden_raft::state_machine::StateMachineStore;
use pgwarden_raft::{StorageError, TypeConfig};
use tempfile::TempDir;

struct Builder;

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
    let err = match SledStore::open(dir.path()) {
        Err(e) => e,
        Ok(_) => panic!("a corrupt store opened"),
    };
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("log entry 7"),
        "{msg}"
    );
    // Nothing was deleted: the bad record is still there for a person to look at.
    let db = sled::open(dir.path()).unwrap();
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
    let b = SledStore::open(dir.path()).unwrap().node_id().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, 0);
}
