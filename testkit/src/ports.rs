//! Loopback ports for test servers, handed out so that nothing else takes them before the
//! server binds.
//!
//! A port asked of the kernel (`bind 127.0.0.1:0`) comes from the ephemeral range, which the
//! kernel also uses for the local end of every outgoing connection: between the probe and
//! the moment a test's PostgreSQL binds it (seconds later, after a clone), a libpq or Raft
//! connection of any test running in parallel may sit on it, and PostgreSQL then cannot
//! listen (this failed a CI run). So ports come from below the ephemeral range instead, in
//! blocks: a test process claims a block by binding an abstract Unix socket named after it,
//! which no other process can bind while it lives and which the kernel frees when it exits,
//! crash or not, leaving nothing on disk.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::sync::Mutex;

/// Below the default ephemeral range (32768–60999) and above the well-known ports and the
/// demo's default base port (15400).
const FIRST: u16 = 16000;
const BLOCK: u16 = 64;
const BLOCKS: u16 = (32700 - FIRST) / BLOCK;

struct Claimed {
    /// Held for the life of the process: it is the claim on the block.
    _locks: Vec<UnixListener>,
    next: u16,
    end: u16,
}

static CLAIMED: Mutex<Option<Claimed>> = Mutex::new(None);

/// Claims a block nobody else holds, starting at a place that differs between processes so
/// that claimers rarely contend.
fn claim_block() -> (UnixListener, u16) {
    let start = (std::process::id() as u16) % BLOCKS;
    for i in 0..BLOCKS {
        let block = (start + i) % BLOCKS;
        let name = format!("pgwarden-test-ports-{block}");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract socket name");
        if let Ok(lock) = UnixListener::bind_addr(&addr) {
            return (lock, FIRST + block * BLOCK);
        }
    }
    panic!(
        "every block of test ports ({FIRST}..{}) is claimed",
        FIRST + BLOCKS * BLOCK
    );
}

/// `n` consecutive loopback ports that are free now and that no other test process will be
/// given.
pub fn free_ports(n: u16) -> u16 {
    assert!(n > 0 && n <= BLOCK, "at most {BLOCK} consecutive ports");
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    let c = claimed.get_or_insert_with(|| {
        let (lock, first) = claim_block();
        Claimed {
            _locks: vec![lock],
            next: first,
            end: first + BLOCK,
        }
    });
    loop {
        if c.next + n > c.end {
            let (lock, first) = claim_block();
            c._locks.push(lock);
            c.next = first;
            c.end = first + BLOCK;
        }
        let first = c.next;
        // Skip ports something outside the tests already listens on.
        match (first..first + n).find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_err()) {
            Some(busy) => c.next = busy + 1,
            None => {
                c.next = first + n;
                return first;
            }
        }
    }
}

/// One loopback port that is free now and that no other test process will be given.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `127.0.0.1:<port>` for one port that is free now and that no other test process will be
/// given.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}
