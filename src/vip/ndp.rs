//! Unsolicited neighbour advertisement, IPv6's gratuitous ARP (RFC 4861 §7.2.6), sent by
//! pgwarden itself on a raw ICMPv6 socket: neighbours replace the cached link-layer address of
//! the VIP with this host's at once. The kernel's own duplicate address detection only asks
//! whether the address is in use; it does not tell the former holder's neighbours to move.
//!
//! The advertisement goes to all nodes (ff02::1) with the override flag set and this host's
//! link-layer address as the target's, hop limit 255 (receivers drop neighbour discovery
//! packets that crossed a router); the kernel fills in the ICMPv6 checksum of a raw ICMPv6
//! socket.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

/// ICMPv6 type of a neighbour advertisement.
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The override flag: replace an existing cache entry.
const OVERRIDE: u32 = 0x2000_0000;
/// Option type: target link-layer address.
const TARGET_LL_ADDR: u8 = 2;

/// The 32-byte ICMPv6 message advertising `ip` at `mac` (checksum left to the kernel).
pub fn packet(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = NEIGHBOR_ADVERTISEMENT;
    // Code 0, checksum 0 (filled in by the kernel).
    p[4..8].copy_from_slice(&OVERRIDE.to_be_bytes());
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = TARGET_LL_ADDR;
    p[25] = 1; // Length in units of 8 bytes.
    p[26..32].copy_from_slice(&mac);
    p
}

fn check(r: i32) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one unsolicited neighbour advertisement for `ip` on interface `index` (needs
/// `CAP_NET_RAW`).
pub fn unsolicited(index: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    use nix::libc;
    let fd = super::arp::open(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
    let set = |opt: i32, value: i32| -> io::Result<()> {
        // SAFETY: the option value is an int that lives for the call.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        })
    };
    let ifindex = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    set(libc::IPV6_MULTICAST_HOPS, 255)?;
    set(libc::IPV6_MULTICAST_IF, ifindex)?;
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value to fill in.
    let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    to.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    to.sin6_scope_id = index;
    super::arp::send_to(&fd, &packet(mac, ip), &to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    #[test]
    fn vip_neighbour_advertisement_overrides_with_this_hosts_address() {
        let ip: Ipv6Addr = "fd00::10".parse().unwrap();
        let p = packet([2, 0, 0, 0, 0, 1], ip);
        assert_eq!(&p[0..4], &[136, 0, 0, 0]);
        assert_eq!(
            &p[4..8],
            &[0x20, 0, 0, 0],
            "override set, solicited and router clear"
        );
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &[2, 0, 0, 0, 0, 1]);
    }

    /// In a fresh network namespace when root, on one end of a veth pair: the kernel accepts
    /// the socket options, the destination and the message, and the other end receives an
    /// ICMPv6 neighbour advertisement for the address.
    #[test]
    fn vip_neighbour_advertisement_is_sent_on_the_link() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for a network namespace and a raw ICMPv6 socket");
            return;
        }
        let out = std::thread::spawn(|| -> Result<Vec<u8>, String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
            let ip = |args: &[&str]| {
                let s = std::process::Command::new("ip").args(args).status();
                matches!(s, Ok(s) if s.success())
            };
            if !(ip(&["link", "add", "na0", "type", "veth", "peer", "name", "na1"])
                && ip(&["link", "set", "na0", "up"])
                && ip(&["link", "set", "na1", "up"]))
            {
                return Err("could not make a veth pair".into());
            }
            let index = |name: &str| nix::net::if_::if_nametoindex(name).map_err(|e| format!("{name}: {e}"));
            let i0 = index("na0")?;
            // A raw ICMPv6 socket on the far end, bound to it, sees what crosses the link.
            // SAFETY: socket(2) with constant arguments, checked before it is owned.
            let rx = unsafe {
                nix::libc::socket(
                    nix::libc::AF_INET6,
                    nix::libc::SOCK_RAW,
                    nix::libc::IPPROTO_ICMPV6,
                )
            };
            if rx < 0 {
                return Err(format!("receive socket: {}", io::Error::last_os_error()));
            }
            // SAFETY: a new descriptor nothing else owns.
            let rx = unsafe { OwnedFd::from_raw_fd(rx) };
            let name = b"na1\0";
            // SAFETY: the option value is a NUL-terminated name valid for the call.
            check(unsafe {
                nix::libc::setsockopt(
                    rx.as_raw_fd(),
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_BINDTODEVICE,
                    name.as_ptr().cast(),
                    name.len() as nix::libc::socklen_t,
                )
            })
            .map_err(|e| format!("bind to na1: {e}"))?;
            let tv = nix::libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: the option value is a timeval valid for the call.
            check(unsafe {
                nix::libc::setsockopt(
                    rx.as_raw_fd(),
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_RCVTIMEO,
                    (&tv as *const nix::libc::timeval).cast(),
                    std::mem::size_of::<nix::libc::timeval>() as nix::libc::socklen_t,
                )
            })
            .map_err(|e| format!("receive timeout: {e}"))?;
            let target: Ipv6Addr = "fd00::10".parse().unwrap();
            // The link-local addresses may still be tentative: retry for a few seconds.
            for _ in 0..25 {
                match unsolicited(i0, [2, 0, 0, 0, 0, 1], target) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => {}
                    Err(e) => return Err(format!("send: {e}")),
                }
                let mut buf = [0u8; 256];
                for _ in 0..8 {
                    // SAFETY: the buffer is valid for its length.
                    let n = unsafe { nix::libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if n <= 0 {
                        break;
                    }
                    let got = &buf[..n as usize];
                    if got.first() == Some(&NEIGHBOR_ADVERTISEMENT)
                        && got.get(8..24) == Some(&target.octets()[..])
                    {
                        return Ok(got.to_vec());
                    }
                }
            }
            Err("no neighbour advertisement for the address reached the other end".into())
        })
        .join()
        .unwrap();
        let got = out.expect("an unsolicited neighbour advertisement on the link");
        assert_eq!(&got[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&got[26..32], &[2, 0, 0, 0, 0, 1]);
    }
}
