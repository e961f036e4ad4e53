//! systemd readiness notification (`Type=notify`), a few lines over a unix datagram socket
//! instead of a dependency on libsystemd.
//!
//! [`take_socket_from_env`] is called once by `main` before any thread starts: it reads
//! `NOTIFY_SOCKET` and removes it from the environment, so no child process (PostgreSQL is
//! built with systemd support on Debian and would send its own `READY=1`) can notify in our
//! name. [`notify`] then sends to the remembered socket; without one (not started by
//! systemd, tests, `pgwarden demo`) it does nothing.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variable systemd sets for services with `Type=notify`.
pub const ENV: &str = "NOTIFY_SOCKET";

static SOCKET: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Remembers `NOTIFY_SOCKET` and removes it from the environment. Call before any thread is
/// spawned (removing an environment variable while another thread reads the environment is
/// a data race in libc).
pub fn take_socket_from_env() {
    let path = std::env::var_os(ENV).map(PathBuf::from);
    if path.is_some() {
        std::env::remove_var(ENV);
    }
    let _ = SOCKET.set(path);
}

/// Sends `state` (e.g. `"READY=1"`) to systemd, if the process was started with a
/// notification socket. A failure is logged and otherwise ignored: systemd then reports the
/// start as timed out, which names the problem better than stopping the node would.
pub fn notify(state: &str) {
    let Some(Some(path)) = SOCKET.get() else { return };
    if let Err(e) = send(path, state) {
        tracing::warn!(socket = %path.display(), state, "cannot notify systemd: {e}");
    }
}

/// Sends one notification datagram to `path`: a filesystem path, or an abstract socket name
/// written with a leading `@` as systemd does.
pub fn send(path: &Path, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_os_str().as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(&path, "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    }

    #[test]
    fn a_notification_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgwarden-test-{}-{}", std::process::id(), rand::random::<u64>());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(Path::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(send(&dir.path().join("absent"), "READY=1").is_err());
    }
}
