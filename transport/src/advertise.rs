//! The address a node tells its peers to dial.
//!
//! A node bound to an unspecified address (`0.0.0.0`, `::`) listens on every interface but
//! cannot be reached at that address: gossiped, it makes peers that learn of the node only
//! through membership unable to dial it, so their traffic detours through anti-entropy. So the
//! unspecified address is never advertised. Without a configured `advertise`, the node takes
//! the address of the interface its traffic to the peers it knows first leaves by (static
//! seeds, the name server discovery asks), else the interface of its default route — asking the
//! kernel which source address a connected UDP socket would use; nothing is sent. A host whose
//! cluster network is not its default route so still advertises the cluster-side address.
//! With no route at all, the loopback address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Documentation addresses (RFC 5737, RFC 3849): routed like any other destination, never
/// reached, because connecting a UDP socket sends nothing.
const PROBE_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);
const PROBE_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    9,
);

/// Where peers should dial a node bound at `bound`: `configured` if given, else `bound` unless
/// its address is unspecified, else the address of the interface toward the first of `toward`
/// (addresses of the family of `bound` only) that has a route, else the default route's, on
/// `bound`'s port.
pub fn advertised(
    bound: SocketAddr,
    configured: Option<SocketAddr>,
    toward: &[SocketAddr],
) -> SocketAddr {
    if let Some(addr) = configured {
        return addr;
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let v6 = bound.is_ipv6();
    let toward_peer = toward
        .iter()
        .filter(|peer| peer.is_ipv6() == v6 && !peer.ip().is_unspecified())
        .find_map(|peer| source_ip(v6, *peer));
    let (ip, why) = match (toward_peer, default_route_ip(v6)) {
        (Some(ip), _) => (
            ip,
            "the interface toward the first peers (seeds, name server)",
        ),
        (None, Some(ip)) => (ip, "the interface of the default route"),
        (None, None) if v6 => (IpAddr::V6(Ipv6Addr::LOCALHOST), "no route: loopback"),
        (None, None) => (IpAddr::V4(Ipv4Addr::LOCALHOST), "no route: loopback"),
    };
    let addr = SocketAddr::new(ip, bound.port());
    tracing::info!(%bound, advertised = %addr, why, "advertising a routable address; set `advertise` (FOUNDATION_ADVERTISE) to choose another");
    addr
}

/// The source address the kernel picks for traffic on the default route, if there is one.
fn default_route_ip(v6: bool) -> Option<IpAddr> {
    source_ip(v6, if v6 { PROBE_V6 } else { PROBE_V4 })
}

/// The source address the kernel picks for traffic to `destination`, if it has a route there.
fn source_ip(v6: bool, destination: SocketAddr) -> Option<IpAddr> {
    let any = if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(destination).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_address_wins_and_a_specific_bind_is_kept() {
        let bound: SocketAddr = "0.0.0.0:7400".parse().unwrap();
        let configured: SocketAddr = "10.1.2.3:7400".parse().unwrap();
        assert_eq!(advertised(bound, Some(configured), &[]), configured);
        let specific: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        assert_eq!(advertised(specific, None, &[]), specific);
    }

    #[test]
    fn the_unspecified_address_is_never_advertised() {
        for bound in ["0.0.0.0:7400", "[::]:7400"] {
            let bound: SocketAddr = bound.parse().unwrap();
            let addr = advertised(bound, None, &[]);
            assert!(!addr.ip().is_unspecified(), "{bound} advertised as {addr}");
            assert_eq!(addr.port(), 7400);
            assert_eq!(addr.is_ipv6(), bound.is_ipv6());
        }
    }

    /// A seed reached over loopback is reached from a loopback address, whatever the default
    /// route: that address is advertised; seeds of the other family or unspecified are skipped.
    #[test]
    fn the_interface_toward_the_first_peers_comes_before_the_default_route() {
        let bound: SocketAddr = "0.0.0.0:7400".parse().unwrap();
        let toward: Vec<SocketAddr> = ["[::1]:7400", "0.0.0.0:7400", "127.0.0.9:7400"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let addr = advertised(bound, None, &toward);
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 7400);
    }
}
