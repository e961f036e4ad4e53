//! The production [`VipDriver`]: the address is added and removed over rtnetlink (through
//! `netlink-packet-route` on a synchronous `netlink-sys` socket, so the fence thread and the
//! fence guard can use it without a runtime), and announced with gratuitous ARP ([`super::arp`]) or, for IPv6, an unsolicited neighbour
//! advertisement ([`super::ndp`]).
//!
//! Every call opens its own socket: calls are rare (a role change), and a fresh socket has no
//! stale replies from an earlier call that timed out.

use super::config::VipSpec;
use super::{VipDriver, VipError};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// Adds and removes the address with rtnetlink; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetlinkDriver;

/// The interface's index, or the error naming `vip.interface`.
pub fn if_index(name: &str) -> Result<u32, VipError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| VipError::NoInterface { name: name.into() })
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> VipError {
    move |source| {
        if matches!(
            source.raw_os_error(),
            Some(nix::libc::EPERM) | Some(nix::libc::EACCES)
        ) {
            VipError::Permission { what, source }
        } else {
            VipError::Netlink { what, source }
        }
    }
}

/// How long one answer from the kernel may take: never reached in practice, but a request
/// that gets no answer must not hold the VIP's lock (and the fence thread behind it) forever.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

fn set_timeout(socket: &Socket) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(ANSWER_WITHIN.as_secs() as _, 0);
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
        .map_err(io::Error::from)
}

/// Sends one request and collects the inner messages of the answer until its end: the ack
/// (`NLMSG_ERROR` with code 0), an error, or `NLMSG_DONE` for a dump.
fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    set_timeout(&socket)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    packet.header.flags = NLM_F_REQUEST | flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let m: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&data[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::Error(_) => return Ok(out),
                NetlinkPayload::InnerMessage(i) => out.push(i),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

fn address_message(spec: &VipSpec, index: u32) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = if spec.addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = spec.prefix;
    m.header.scope = AddressScope::Universe;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(spec.addr));
    m.attributes.push(AddressAttribute::Address(spec.addr));
    if let Some(l) = &spec.label {
        m.attributes.push(AddressAttribute::Label(l.clone()));
    }
    m
}

/// The addresses (with prefix lengths) on interface `index`.
pub fn addresses(index: u32) -> Result<Vec<(IpAddr, u8)>, VipError> {
    let all = request(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_DUMP,
    )
    .map_err(io_err("list the interface's addresses"))?;
    Ok(all
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                let ip = a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some((ip, a.header.prefix_len))
            }
            _ => None,
        })
        .collect())
}

/// The hardware address of interface `name` (for the ARP announcement), by
/// `SIOCGIFHWADDR`: `None` for an interface without an Ethernet address.
pub fn mac(name: &str) -> Result<Option<[u8; 6]>, VipError> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let what = "read the interface's hardware address";
    // SAFETY: socket(2) with constant arguments; the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(what)(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value to fill in.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the name from and writes the address into `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(io_err(what)(io::Error::last_os_error()));
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Ok(None);
    }
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(Some(mac))
}

impl VipDriver for NetlinkDriver {
    fn holds(&self, spec: &VipSpec) -> Result<bool, VipError> {
        let index = if_index(&spec.interface)?;
        Ok(addresses(index)?.iter().any(|(ip, _)| *ip == spec.addr))
    }

    fn add(&self, spec: &VipSpec) -> Result<(), VipError> {
        let index = if_index(&spec.interface)?;
        let msg = RouteNetlinkMessage::NewAddress(address_message(spec, index));
        match request(msg, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            // Already there (a restart while holding the lease): nothing to do.
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            Err(e) => Err(io_err("add the address")(e)),
        }
    }

    fn remove(&self, spec: &VipSpec) -> Result<bool, VipError> {
        let index = if_index(&spec.interface)?;
        let msg = RouteNetlinkMessage::DelAddress(address_message(spec, index));
        match request(msg, NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(io_err("remove the address")(e)),
        }
    }

    fn announce(&self, spec: &VipSpec) -> Result<(), VipError> {
        let index = if_index(&spec.interface)?;
        let Some(mac) = mac(&spec.interface)? else {
            // No hardware address (a tunnel, loopback): nothing to announce.
            return Ok(());
        };
        match spec.addr {
            IpAddr::V4(ip) => super::arp::gratuitous(index, mac, ip).map_err(io_err("send a gratuitous ARP")),
            IpAddr::V6(ip) => super::ndp::unsolicited(index, mac, ip)
                .map_err(io_err("send an unsolicited neighbour advertisement")),
        }
    }

    fn in_subnet(&self, spec: &VipSpec) -> Result<bool, VipError> {
        let index = if_index(&spec.interface)?;
        Ok(addresses(index)?
            .iter()
            .filter(|(ip, _)| *ip != spec.addr)
            .any(|(ip, prefix)| same_subnet(*ip, *prefix, spec.addr)))
    }
}

/// Whether `other` lies in `net/prefix`.
pub fn same_subnet(net: IpAddr, prefix: u8, other: IpAddr) -> bool {
    match (net, other) {
        (IpAddr::V4(a), IpAddr::V4(b)) => ipnet::Ipv4Net::new(a, prefix).is_ok_and(|n| n.contains(&b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => ipnet::Ipv6Net::new(a, prefix).is_ok_and(|n| n.contains(&b)),
        _ => false,
    }
}
