//! Patroni's watchdog: a kernel timer that reboots the machine unless it is fed, so a
//! primary whose daemon hangs (and stops refreshing the leader key) is taken down before
//! another member can take the key over.
//!
//! - `off`: never touched. `automatic`: used when it can be armed, otherwise a log line.
//!   `required`: a member whose watchdog cannot be armed does not race for the leader key,
//!   and a primary that cannot arm it demotes.
//! - Armed before promotion and whenever the lock holder runs as primary: the device is
//!   opened and its timeout set to `ttl − safety_margin` (WDIOC_SETTIMEOUT) when the driver
//!   can, otherwise its current timeout must not exceed that.
//! - Fed after every successful leader-key refresh. Disarmed with the magic close (write
//!   `V`, then close) on demote, on pause and at shutdown.
//!
//! The OS layer is the narrow [`WatchdogDriver`]/[`WatchdogDevice`] pair: [`LinuxDriver`]
//! talks to `/dev/watchdog`; tests use a stand-in, never the real device (arming it in a
//! test would reboot the machine). This module decides nothing about roles; the runner
//! calls it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::config::WatchdogMode;

/// What the driver says it can do (WDIOC_GETSUPPORT).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// WDIOF_SETTIMEOUT: the timeout can be set.
    pub set_timeout: bool,
    /// WDIOF_MAGICCLOSE: writing `V` before close stops the timer.
    pub magic_close: bool,
    /// The driver's name for the board.
    pub identity: String,
}

/// One opened watchdog device.
pub trait WatchdogDevice: Send {
    /// The driver's capabilities.
    fn support(&mut self) -> std::io::Result<Support>;
    /// Sets the timeout, in seconds.
    fn set_timeout(&mut self, secs: u32) -> std::io::Result<()>;
    /// The timeout in effect, in seconds.
    fn timeout(&mut self) -> std::io::Result<u32>;
    /// Restarts the timer.
    fn keepalive(&mut self) -> std::io::Result<()>;
    /// Writes the magic character `V`, then closes: the driver stops the timer.
    fn magic_close(self: Box<Self>) -> std::io::Result<()>;
}

/// Opens watchdog devices.
pub trait WatchdogDriver: Send + Sync {
    /// Whether `path` exists and is writable (Patroni's `is_healthy`).
    fn usable(&self, path: &Path) -> bool;
    /// Opens `path` for writing; from then on the timer runs.
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn WatchdogDevice>>;
    /// The same driver again, for a watchdog rebuilt on reload.
    fn clone_box(&self) -> Box<dyn WatchdogDriver>;
}

/// Why the watchdog could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// `ttl − safety_margin` is shorter than `loop_wait`: it would fire between two feeds.
    #[error("watchdog timeout {timeout} s (ttl − safety_margin) is shorter than loop_wait {loop_wait} s")]
    UnsafeTiming {
        /// ttl − safety_margin.
        timeout: i64,
        /// loop_wait.
        loop_wait: u64,
    },
    /// The device could not be opened or driven.
    #[error("failed to {operation} watchdog device `{path}`")]
    Device {
        /// What was being done.
        operation: &'static str,
        /// The device.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device's timeout is longer than the safe one and cannot be changed.
    #[error("watchdog device `{path}` has a {actual} s timeout, longer than the safe {wanted} s, and cannot be set")]
    TimeoutTooLong {
        /// The device.
        path: PathBuf,
        /// Its timeout.
        actual: u32,
        /// ttl − safety_margin.
        wanted: u32,
    },
    /// An earlier activation failed: Patroni retries only after a configuration change
    /// (here, a restart of pgwarden).
    #[error("the watchdog failed earlier and is not retried until pgwarden restarts")]
    FailedEarlier,
}

/// Timing the watchdog derives its timeout from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchdogTiming {
    /// Leader key TTL, seconds.
    pub ttl: u64,
    /// loop_wait, seconds.
    pub loop_wait: u64,
    /// Seconds from a feed (a successful lease refresh) to the lease's fence deadline
    /// (`ttl − margin`): the watchdog never fires before the fence would have stopped
    /// PostgreSQL, so a DCS blip the lease covers cannot reset the host.
    pub fence: u64,
}

/// The watchdog of one member (Patroni's facade). Methods take `&self` so the runner can
/// feed it from its lease refresh; the state sits behind a mutex held only for syscalls.
pub struct Watchdog {
    mode: WatchdogMode,
    path: PathBuf,
    /// Seconds; `-1` means `ttl / 2` (Patroni).
    safety_margin: i64,
    driver: Box<dyn WatchdogDriver>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    device: Option<Box<dyn WatchdogDevice>>,
    /// The timeout it was armed with.
    armed_timeout: Option<u32>,
    support: Support,
    /// Required mode and activation failed: unhealthy until restart.
    failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watchdog {
    /// A watchdog on `path` through `driver`.
    pub fn new(
        mode: WatchdogMode,
        path: PathBuf,
        safety_margin: i64,
        driver: Box<dyn WatchdogDriver>,
    ) -> Self {
        Watchdog {
            mode,
            path,
            safety_margin,
            driver,
            state: Mutex::default(),
        }
    }

    /// Whether this watchdog was configured with these settings.
    pub fn configured_as(&self, mode: WatchdogMode, path: &Path, safety_margin: i64) -> bool {
        self.mode == mode && self.path == path && self.safety_margin == safety_margin
    }

    /// A new watchdog with other settings, on the same driver (a reload). The caller
    /// disarms this one first.
    pub fn reconfigured(&self, mode: WatchdogMode, path: PathBuf, safety_margin: i64) -> Watchdog {
        Watchdog::new(mode, path, safety_margin, self.driver.clone_box())
    }

    /// Mode `off`: never touches a device.
    pub fn off() -> Self {
        Watchdog::new(WatchdogMode::Off, PathBuf::new(), 5, Box::new(LinuxDriver))
    }

    /// The configured mode.
    pub fn mode(&self) -> WatchdogMode {
        self.mode
    }

    /// `ttl − safety_margin` (`ttl / 2` with a margin of −1), but never less than the time
    /// to the lease's fence deadline: Patroni's margin of 5 s was sized for a ttl of 30, and
    /// with a short ttl it would reset the host while the lease is still valid.
    pub fn timeout_for(&self, t: WatchdogTiming) -> i64 {
        let ttl = i64::try_from(t.ttl).unwrap_or(i64::MAX);
        let configured = if self.safety_margin == -1 {
            ttl / 2
        } else {
            ttl.saturating_sub(self.safety_margin)
        };
        configured.max(i64::try_from(t.fence).unwrap_or(i64::MAX))
    }

    fn safe_timeout(&self, t: WatchdogTiming) -> Result<u32, WatchdogError> {
        let timeout = self.timeout_for(t);
        let loop_wait = i64::try_from(t.loop_wait).unwrap_or(i64::MAX);
        if timeout < loop_wait || timeout < 1 {
            return Err(WatchdogError::UnsafeTiming {
                timeout,
                loop_wait: t.loop_wait,
            });
        }
        Ok(u32::try_from(timeout).unwrap_or(u32::MAX))
    }

    /// Whether the device is open (the timer runs).
    pub fn is_running(&self) -> bool {
        lock(&self.state).device.is_some()
    }

    /// `false` only in `required` mode when the watchdog cannot be used: unsafe timing, the
    /// device missing or not writable, or an earlier activation failed. Such a member does
    /// not race for the leader key.
    pub fn is_healthy(&self, t: WatchdogTiming) -> bool {
        if self.mode != WatchdogMode::Required {
            return true;
        }
        let st = lock(&self.state);
        if st.device.is_some() {
            return true;
        }
        !st.failed && self.safe_timeout(t).is_ok() && self.driver.usable(&self.path)
    }

    /// Arms the watchdog (no-op when it runs already or the mode is off). `Err` only in
    /// `required` mode, where the caller must not be (or stay) primary; in `automatic`
    /// mode a failure is logged and the member carries on without it.
    pub fn activate(&self, t: WatchdogTiming) -> Result<(), WatchdogError> {
        if self.mode == WatchdogMode::Off {
            return Ok(());
        }
        let mut st = lock(&self.state);
        if st.device.is_some() {
            return Ok(());
        }
        // Like Patroni, a failed activation is not retried until the configuration changes
        // (here: until pgwarden restarts), so the log is not flooded every loop.
        if st.failed {
            return match self.mode {
                WatchdogMode::Required => Err(WatchdogError::FailedEarlier),
                _ => Ok(()),
            };
        }
        match self.arm(&mut st, t) {
            Ok(()) => Ok(()),
            Err(e) if self.mode == WatchdogMode::Required => {
                st.failed = true;
                tracing::error!(
                    error = %crate::error::chain(&e),
                    "watchdog.mode is required but the watchdog could not be armed"
                );
                Err(e)
            }
            Err(e) => {
                st.failed = true;
                tracing::info!(
                    error = %crate::error::chain(&e),
                    "no usable watchdog; going on without it (watchdog.mode automatic)"
                );
                Ok(())
            }
        }
    }

    fn arm(&self, st: &mut State, t: WatchdogTiming) -> Result<(), WatchdogError> {
        let wanted = self.safe_timeout(t)?;
        let dev_err = |operation, source| WatchdogError::Device {
            operation,
            path: self.path.clone(),
            source,
        };
        let mut dev = self.driver.open(&self.path).map_err(|e| dev_err("open", e))?;
        let result = (|| {
            let support = dev
                .support()
                .map_err(|e| dev_err("query (WDIOC_GETSUPPORT)", e))?;
            if support.set_timeout {
                dev.set_timeout(wanted)
                    .map_err(|e| dev_err("set the timeout of (WDIOC_SETTIMEOUT)", e))?;
            }
            let actual = dev
                .timeout()
                .map_err(|e| dev_err("read the timeout of (WDIOC_GETTIMEOUT)", e))?;
            if actual > wanted {
                return Err(WatchdogError::TimeoutTooLong {
                    path: self.path.clone(),
                    actual,
                    wanted,
                });
            }
            if u64::from(actual) < t.loop_wait {
                return Err(WatchdogError::UnsafeTiming {
                    timeout: i64::from(actual),
                    loop_wait: t.loop_wait,
                });
            }
            Ok((support, actual))
        })();
        match result {
            Ok((support, actual)) => {
                if !support.magic_close {
                    tracing::warn!(
                        "the watchdog driver cannot be disabled (no magic close): the machine \
                         reboots once pgwarden stops feeding it"
                    );
                }
                tracing::info!(
                    device = %self.path.display(),
                    identity = %support.identity,
                    timeout = actual,
                    slack = i64::from(actual) - i64::try_from(t.loop_wait).unwrap_or(i64::MAX),
                    "watchdog armed"
                );
                st.device = Some(dev);
                st.armed_timeout = Some(actual);
                st.support = support;
                Ok(())
            }
            Err(e) => {
                // Do not leave a half-armed timer behind.
                if let Err(ce) = dev.magic_close() {
                    tracing::error!(error = %ce, device = %self.path.display(), "closing the watchdog device after a failed arm");
                }
                Err(e)
            }
        }
    }

    /// Feeds the watchdog when it runs; re-applies the timeout when ttl changed.
    pub fn keepalive(&self, t: WatchdogTiming) {
        let mut st = lock(&self.state);
        let State {
            device,
            armed_timeout,
            support,
            ..
        } = &mut *st;
        let Some(dev) = device.as_mut() else { return };
        if let Err(e) = dev.keepalive() {
            tracing::error!(error = %e, device = %self.path.display(), "feeding the watchdog failed");
            return;
        }
        if let (true, Ok(wanted)) = (support.set_timeout, self.safe_timeout(t)) {
            if *armed_timeout != Some(wanted) {
                match dev.set_timeout(wanted) {
                    Ok(()) => {
                        tracing::info!(timeout = wanted, "watchdog timeout updated");
                        *armed_timeout = Some(wanted);
                    }
                    Err(e) => tracing::error!(error = %e, "updating the watchdog timeout failed"),
                }
            }
        }
    }

    /// Disarms it (magic close) when it runs.
    pub fn disable(&self) {
        let mut st = lock(&self.state);
        let Some(mut dev) = st.device.take() else { return };
        st.armed_timeout = None;
        if !st.support.magic_close {
            // Give an operator the full timeout before the reboot.
            let _ = dev.keepalive();
            tracing::warn!("the watchdog driver cannot be disabled: the machine reboots when it times out");
        }
        match dev.magic_close() {
            Ok(()) => tracing::info!(device = %self.path.display(), "watchdog disarmed"),
            Err(e) => {
                tracing::error!(error = %e, device = %self.path.display(), "disarming the watchdog failed")
            }
        }
    }
}

/// Linux `/dev/watchdog` (linux/watchdog.h).
pub struct LinuxDriver;

/// `struct watchdog_info`.
#[repr(C)]
#[derive(Default)]
struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_MAGICCLOSE: u32 = 0x0100;

mod ioctl {
    nix::ioctl_read!(get_support, b'W', 0, super::WatchdogInfo);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, nix::libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, nix::libc::c_int);
}

struct LinuxDevice {
    file: File,
}

impl WatchdogDriver for LinuxDriver {
    fn clone_box(&self) -> Box<dyn WatchdogDriver> {
        Box::new(LinuxDriver)
    }

    fn usable(&self, path: &Path) -> bool {
        nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn WatchdogDevice>> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(LinuxDevice { file }))
    }
}

impl WatchdogDevice for LinuxDevice {
    fn support(&mut self) -> std::io::Result<Support> {
        use std::os::fd::AsRawFd;
        let mut info = WatchdogInfo::default();
        // SAFETY: WDIOC_GETSUPPORT writes one `struct watchdog_info` (same layout, repr(C))
        // through the pointer, which is valid and exclusive for the call; the fd is open.
        unsafe { ioctl::get_support(self.file.as_raw_fd(), &mut info) }.map_err(std::io::Error::from)?;
        let end = info
            .identity
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(info.identity.len());
        Ok(Support {
            set_timeout: info.options & WDIOF_SETTIMEOUT != 0,
            magic_close: info.options & WDIOF_MAGICCLOSE != 0,
            identity: String::from_utf8_lossy(&info.identity[..end]).into_owned(),
        })
    }

    fn set_timeout(&mut self, secs: u32) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut v = nix::libc::c_int::try_from(secs)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "timeout out of range"))?;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes back one int through a valid pointer.
        unsafe { ioctl::set_timeout(self.file.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
        Ok(())
    }

    fn timeout(&mut self) -> std::io::Result<u32> {
        use std::os::fd::AsRawFd;
        let mut v: nix::libc::c_int = 0;
        // SAFETY: WDIOC_GETTIMEOUT writes one int through a valid pointer.
        unsafe { ioctl::get_timeout(self.file.as_raw_fd(), &mut v) }.map_err(std::io::Error::from)?;
        u32::try_from(v).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "negative timeout"))
    }

    fn keepalive(&mut self) -> std::io::Result<()> {
        // Any write restarts the timer (Patroni writes '1'); it works on every driver.
        self.file.write_all(b"1")
    }

    fn magic_close(mut self: Box<Self>) -> std::io::Result<()> {
        self.file.write_all(b"V")
        // The file is closed when `self` drops here.
    }
}

/// A stand-in device for tests: records operations in order and can be told to fail.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::Arc;

    /// Called when the device is opened (tests check what happened before).
    pub type OnOpen = Arc<dyn Fn() + Send + Sync>;

    /// What tests can set and read.
    #[derive(Default)]
    pub struct FakeState {
        /// Operations in order: `open`, `set_timeout 25`, `keepalive`, `magic_close`.
        pub ops: Vec<String>,
        /// `usable` answers this negated.
        pub missing: bool,
        /// `open` fails.
        pub fail_open: bool,
        /// The driver cannot set the timeout (no WDIOF_SETTIMEOUT).
        pub fixed_timeout: Option<u32>,
        /// The timeout in effect.
        pub timeout: u32,
        /// Open now.
        pub open: bool,
        /// Hook run on open.
        pub on_open: Option<OnOpen>,
    }

    /// The stand-in driver; clones share state.
    #[derive(Clone, Default)]
    pub struct FakeDriver(pub Arc<Mutex<FakeState>>);

    impl FakeDriver {
        /// Recorded operations.
        pub fn ops(&self) -> Vec<String> {
            lock(&self.0).ops.clone()
        }
        /// Changes the state.
        pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
            f(&mut lock(&self.0))
        }
    }

    struct FakeDevice(Arc<Mutex<FakeState>>);

    impl WatchdogDriver for FakeDriver {
        fn clone_box(&self) -> Box<dyn WatchdogDriver> {
            Box::new(self.clone())
        }

        fn usable(&self, _path: &Path) -> bool {
            !lock(&self.0).missing
        }
        fn open(&self, _path: &Path) -> std::io::Result<Box<dyn WatchdogDevice>> {
            let mut s = lock(&self.0);
            if s.missing || s.fail_open {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            s.ops.push("open".into());
            s.open = true;
            if let Some(hook) = s.on_open.clone() {
                hook();
            }
            if let Some(t) = s.fixed_timeout {
                s.timeout = t;
            } else if s.timeout == 0 {
                s.timeout = 60;
            }
            Ok(Box::new(FakeDevice(self.0.clone())))
        }
    }

    impl WatchdogDevice for FakeDevice {
        fn support(&mut self) -> std::io::Result<Support> {
            Ok(Support {
                set_timeout: lock(&self.0).fixed_timeout.is_none(),
                magic_close: true,
                identity: "fake watchdog".into(),
            })
        }
        fn set_timeout(&mut self, secs: u32) -> std::io::Result<()> {
            let mut s = lock(&self.0);
            s.ops.push(format!("set_timeout {secs}"));
            s.timeout = secs;
            Ok(())
        }
        fn timeout(&mut self) -> std::io::Result<u32> {
            Ok(lock(&self.0).timeout)
        }
        fn keepalive(&mut self) -> std::io::Result<()> {
            lock(&self.0).ops.push("keepalive".into());
            Ok(())
        }
        fn magic_close(self: Box<Self>) -> std::io::Result<()> {
            let mut s = lock(&self.0);
            s.ops.push("magic_close".into());
            s.open = false;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDriver;
    use super::*;

    const T: WatchdogTiming = WatchdogTiming {
        ttl: 30,
        loop_wait: 10,
        fence: 0,
    };

    fn wd(mode: WatchdogMode, margin: i64, d: &FakeDriver) -> Watchdog {
        Watchdog::new(mode, "/dev/fake-watchdog".into(), margin, Box::new(d.clone()))
    }

    /// Armed with ttl − safety_margin, fed, and magic-closed.
    #[test]
    fn arms_with_ttl_minus_margin_feeds_and_magic_closes() {
        let d = FakeDriver::default();
        let w = wd(WatchdogMode::Automatic, 5, &d);
        assert!(!w.is_running());
        w.activate(T).unwrap();
        assert!(w.is_running());
        w.keepalive(T);
        w.keepalive(T);
        w.disable();
        assert!(!w.is_running());
        assert_eq!(
            d.ops(),
            ["open", "set_timeout 25", "keepalive", "keepalive", "magic_close"]
        );
        // Disarmed: feeding and disabling again do nothing.
        w.keepalive(T);
        w.disable();
        assert_eq!(d.ops().len(), 5);
    }

    /// safety_margin −1 means ttl // 2; a ttl change re-applies the timeout at the next feed.
    #[test]
    fn margin_minus_one_is_half_the_ttl_and_ttl_changes_apply_on_feed() {
        let d = FakeDriver::default();
        let w = wd(WatchdogMode::Required, -1, &d);
        w.activate(T).unwrap();
        w.keepalive(WatchdogTiming {
            ttl: 40,
            loop_wait: 10,
            fence: 0,
        });
        assert_eq!(d.ops(), ["open", "set_timeout 15", "keepalive", "set_timeout 20"]);
    }

    /// A device whose timeout cannot be set is accepted only when it is short enough.
    #[test]
    fn a_fixed_timeout_must_not_exceed_the_safe_one() {
        let d = FakeDriver::default();
        d.with(|s| s.fixed_timeout = Some(60));
        let w = wd(WatchdogMode::Required, 5, &d);
        let e = w.activate(T).unwrap_err();
        assert!(
            matches!(
                e,
                WatchdogError::TimeoutTooLong {
                    actual: 60,
                    wanted: 25,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(d.ops(), ["open", "magic_close"], "a failed arm closes the device");
        assert!(!w.is_healthy(T), "required and failed: unhealthy until restart");
        let d2 = FakeDriver::default();
        d2.with(|s| s.fixed_timeout = Some(20));
        let ok = wd(WatchdogMode::Required, 5, &d2);
        ok.activate(T).unwrap();
        assert!(ok.is_running());
    }

    /// required: a missing device or unsafe timing is unhealthy and activation fails;
    /// automatic: it carries on; off: nothing is touched.
    #[test]
    fn modes_decide_what_a_failure_means() {
        let d = FakeDriver::default();
        d.with(|s| s.missing = true);
        let req = wd(WatchdogMode::Required, 5, &d);
        assert!(!req.is_healthy(T));
        assert!(req.activate(T).is_err());
        let auto = wd(WatchdogMode::Automatic, 5, &d);
        assert!(auto.is_healthy(T));
        auto.activate(T).unwrap();
        assert!(!auto.is_running());
        let ok = FakeDriver::default();
        let unsafe_timing = wd(WatchdogMode::Required, 25, &ok);
        assert!(!unsafe_timing.is_healthy(T), "30 − 25 < loop_wait 10");
        let off = wd(WatchdogMode::Off, 5, &ok);
        off.activate(T).unwrap();
        assert!(!off.is_running());
        assert!(ok.ops().is_empty());
    }

    /// The real Linux device code on a regular file (never /dev/watchdog): feeding writes
    /// `1`, the magic close writes `V`, and the watchdog ioctls fail cleanly (ENOTTY), so
    /// arming such a "device" fails with an error naming it instead of panicking.
    #[test]
    fn the_linux_device_writes_feeds_and_the_magic_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        std::fs::write(&path, "").unwrap();
        let drv = LinuxDriver;
        assert!(drv.usable(&path));
        assert!(!drv.usable(&dir.path().join("absent")));
        let mut dev = drv.open(&path).unwrap();
        assert!(dev.support().is_err(), "a regular file is not a watchdog");
        dev.keepalive().unwrap();
        dev.keepalive().unwrap();
        dev.magic_close().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "11V");
        let w = Watchdog::new(WatchdogMode::Required, path.clone(), 5, Box::new(LinuxDriver));
        let e = w.activate(T).unwrap_err();
        let text = crate::error::chain(&e);
        assert!(
            text.contains("WDIOC_GETSUPPORT") && text.contains("watchdog"),
            "{text}"
        );
        assert!(!w.is_running());
        assert!(
            std::fs::read_to_string(&path).unwrap().ends_with('V'),
            "closed with the magic V"
        );
    }

    /// F6: at pgwarden's defaults (ttl 10, loop_wait 2, a fence 8 s after a refresh) the
    /// timeout is the fence deadline, not ttl − safety_margin = 5 s, which fired during DCS
    /// blips the lease covers; a margin leaving more than the fence is kept.
    #[test]
    fn safety_f6_timeout_never_shorter_than_the_fence_deadline() {
        let defaults = WatchdogTiming {
            ttl: 10,
            loop_wait: 2,
            fence: 8,
        };
        let d = FakeDriver::default();
        let w = wd(WatchdogMode::Required, 5, &d);
        assert_eq!(w.timeout_for(defaults), 8);
        w.activate(defaults).unwrap();
        assert_eq!(d.ops(), ["open", "set_timeout 8"]);
        let long = WatchdogTiming {
            ttl: 60,
            loop_wait: 10,
            fence: 58,
        };
        assert_eq!(wd(WatchdogMode::Required, -1, &d).timeout_for(long), 58);
        assert_eq!(wd(WatchdogMode::Required, 1, &d).timeout_for(long), 59);
    }
}
