//! Gratuitous ARP, sent by pgwarden itself on an `AF_PACKET` socket: neighbours (the client
//! hosts, the router) replace the cached hardware address of the VIP with this host's at once,
//! instead of sending to the former holder until their cache entry goes stale.
//!
//! The packet is an ARP request for the VIP from the VIP (sender = target = the address,
//! target hardware address zero), broadcast: that is what the kernel's `arp_notify`, keepalived
//! and `arping -U` send, and what every stack updates its cache from.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;

/// The 28-byte ARP payload announcing `ip` at `mac`.
pub fn packet(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // Target hardware address stays zero.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Opens a socket of `domain`/`kind`/`protocol` (close-on-exec) for one announcement.
pub(super) fn open(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with plain integer arguments; the result is checked before it is owned.
    let fd = unsafe { nix::libc::socket(domain, kind | nix::libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `packet` on `fd` to the socket address `to` (a `sockaddr_*` of the socket's family).
pub(super) fn send_to<A>(fd: &OwnedFd, packet: &[u8], to: &A) -> io::Result<()> {
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        nix::libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (to as *const A).cast(),
            std::mem::size_of::<A>() as nix::libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Broadcasts one gratuitous ARP for `ip` on interface `index` (needs `CAP_NET_RAW`).
pub fn gratuitous(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    use nix::libc;
    let fd = open(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(ETH_P_ARP.to_be()))?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    send_to(&fd, &packet(mac, ip), &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_arp_packet_announces_the_address_from_itself() {
        let p = packet([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(&p[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&p[14..18], &[10, 0, 0, 10]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..28], &[10, 0, 0, 10]);
    }
}
