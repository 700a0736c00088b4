//! Which addresses are the box's own or its networks', for every path that must keep a
//! client's or a guest's requests to the public internet: sandboxes' sockets and outbound
//! HTTP, and the daemon's own registry pulls.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an address is one a wildcard grant must not reach: anything but a public unicast
/// address (loopback, private, shared/CGNAT, link-local, benchmarking, reserved, multicast,
/// documentation, and IPv6 forms that embed such an IPv4 address).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6.to_ipv4_mapped().is_some_and(is_private_v4)
                || embedded_v4(v6).is_some_and(is_private_v4)
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space, CGNAT (100.64.0.0/10)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking (198.18.0.0/15)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments (192.0.0.0/24)
        || a >= 240 // reserved (240.0.0.0/4)
}

/// The IPv4 address inside a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(v4(seg[6], seg[7]));
    }
    (seg[0] == 0x2002).then(|| v4(seg[1], seg[2]))
}
