//! A userspace Ethernet switch that delays frames between sites, for kernels built without
//! `sch_netem` (the machine these tests were written on has neither netem nor fq, so no
//! qdisc can hold a packet back). Each namespace gets a TAP device as its `eth0`; the switch
//! reads every frame a namespace sends, learns source MAC addresses, and hands the frame to
//! the destination's TAP after the one-way delay between the two ports (broadcasts and
//! unknown destinations go to every other port, each with its own delay).
//!
//! One writer thread per (source, destination) pair: the delay of a pair is constant, so a
//! FIFO per pair keeps the order TCP expects while a frame of a fast pair never waits behind
//! one of a slow pair. The tc filters of [`crate::NetLab`] (cuts, loss) sit on the TAP's
//! egress inside the namespace, before the switch, exactly as they sat on the veth.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::libc;

/// `_IOW('T', 202, int)`: attach the file to a TUN/TAP device of that name (created if absent).
const TUNSETIFF: u64 = 0x4004_54ca;
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);

type Mac = [u8; 6];
type Frame = (Instant, Vec<u8>);

/// The running switch; stopped (threads joined, TAP devices closed, hence removed) on drop.
pub struct DelaySwitch {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Opens a TAP device named `name` inside the namespace at `/run/netns/<ns>` (a thread
/// enters it for the call; the file keeps working from any namespace afterwards).
pub fn open_tap(ns: &str, name: &str) -> Result<File, String> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("enter {}: {e}", path.display()))?;
            tun_open(name)
        })
        .join()
        .unwrap_or_else(|_| Err("the thread opening the TAP device panicked".into()))
    })
}

fn tun_open(name: &str) -> Result<File, String> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    if name.len() >= 16 {
        return Err(format!("interface name {name:?} is longer than 15 bytes"));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    let mut ifr = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        pad: [0; 22],
    };
    ifr.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an `ifreq`, whose layout IfReq reproduces (40 bytes:
    // the name, then a union whose first member is the flags).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut IfReq) };
    if r < 0 {
        return Err(format!("TUNSETIFF {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// Waits up to [`TICK`] for `f` to be readable.
fn readable(f: &File) -> bool {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, TICK.as_millis() as libc::c_int) };
    r > 0 && p.revents & libc::POLLIN != 0
}

impl DelaySwitch {
    /// Starts switching between `ports` (TAP files); `delay(from, to)` is the one-way delay
    /// of a frame from port `from` to port `to`.
    pub fn start(ports: Vec<File>, delay: impl Fn(usize, usize) -> Duration) -> DelaySwitch {
        let stop = Arc::new(AtomicBool::new(false));
        let ports: Vec<Arc<File>> = ports.into_iter().map(Arc::new).collect();
        let n = ports.len();
        let learned: Arc<Mutex<HashMap<Mac, usize>>> = Arc::default();
        let mut threads = Vec::new();
        // to[from][to]: the queue of frames from `from` to `to`.
        let mut to: Vec<Vec<Option<Sender<Frame>>>> = (0..n).map(|_| vec![None; n]).collect();
        for (from, senders) in to.iter_mut().enumerate() {
            for (dst, slot) in senders.iter_mut().enumerate().filter(|(d, _)| *d != from) {
                let (tx, rx) = mpsc::channel::<Frame>();
                *slot = Some(tx);
                let (out, stop) = (ports[dst].clone(), stop.clone());
                let d = delay(from, dst);
                threads.push(std::thread::spawn(move || deliver(rx, out, d, stop)));
            }
        }
        for (from, senders) in to.into_iter().enumerate() {
            let (port, stop, learned) = (ports[from].clone(), stop.clone(), learned.clone());
            threads.push(std::thread::spawn(move || {
                receive(from, port, senders, learned, stop)
            }));
        }
        DelaySwitch { stop, threads }
    }
}

/// Reads the frames port `from` sends and queues them towards their destinations.
fn receive(
    from: usize,
    port: Arc<File>,
    to: Vec<Option<Sender<Frame>>>,
    learned: Arc<Mutex<HashMap<Mac, usize>>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    // Bounded by the stop flag, looked at every TICK.
    while !stop.load(Ordering::Relaxed) {
        if !readable(&port) {
            continue;
        }
        let n = match (&*port).read(&mut buf) {
            Ok(n) if n >= 14 => n,
            _ => continue,
        };
        let now = Instant::now();
        let frame = buf[..n].to_vec();
        let dst: Mac = frame[0..6].try_into().unwrap_or_default();
        let src: Mac = frame[6..12].try_into().unwrap_or_default();
        let known = {
            let mut l = learned.lock().unwrap_or_else(|e| e.into_inner());
            l.insert(src, from);
            // Multicast/broadcast (group bit set) go everywhere.
            if dst[0] & 1 == 0 {
                l.get(&dst).copied()
            } else {
                None
            }
        };
        match known {
            Some(d) if d != from => {
                if let Some(tx) = &to[d] {
                    let _ = tx.send((now, frame));
                }
            }
            Some(_) => {}
            None => {
                for tx in to.iter().flatten() {
                    let _ = tx.send((now, frame.clone()));
                }
            }
        }
    }
}

/// Writes the frames of one (source, destination) pair `delay` after they were read.
fn deliver(rx: Receiver<Frame>, out: Arc<File>, delay: Duration, stop: Arc<AtomicBool>) {
    // Bounded by the stop flag, looked at every TICK.
    while !stop.load(Ordering::Relaxed) {
        let (at, frame) = match rx.recv_timeout(TICK) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let due = at + delay;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A frame the device refuses (down, full) is lost, as on a wire.
        let _ = (&*out).write(&frame);
    }
}

impl Drop for DelaySwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
