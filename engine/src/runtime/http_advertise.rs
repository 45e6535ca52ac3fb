//! The address a node puts into membership metadata for its HTTP API.
//!
//! Other nodes read it to reach this node's `/keyspaces` (the status page's convergence
//! column), so it must be routable: the bound address when it names a specific IP, else (bound
//! to `0.0.0.0` or `::`, listening everywhere) the IP peers already dial for QUIC, with the
//! HTTP port. A configured `http_advertise` wins. The unspecified address is never advertised.

use std::net::SocketAddr;

/// Where other nodes should reach an HTTP server bound at `bound`: `configured` if given, else
/// `bound` unless its IP is unspecified, else `quic`'s IP (what peers already dial) on
/// `bound`'s port when it is of a family `bound` listens on, else the default route's
/// interface address (as the transport derives its own).
pub(crate) fn http_advertised(
    bound: SocketAddr,
    configured: Option<SocketAddr>,
    quic: SocketAddr,
) -> SocketAddr {
    if let Some(addr) = configured.filter(|a| !a.ip().is_unspecified()) {
        return addr;
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    // A `::` socket usually takes IPv4 too (dual stack); a `0.0.0.0` one never takes IPv6.
    let same_family = quic.is_ipv4() == bound.is_ipv4() || bound.is_ipv6();
    if !quic.ip().is_unspecified() && same_family {
        return SocketAddr::new(quic.ip(), bound.port());
    }
    foundation_transport::advertise::advertised(bound, None, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_configured_address_wins() {
        let chosen = http_advertised(
            addr("0.0.0.0:7401"),
            Some(addr("192.0.2.7:8080")),
            addr("10.0.0.5:7400"),
        );
        assert_eq!(chosen, addr("192.0.2.7:8080"));
    }

    #[test]
    fn a_specific_bind_is_advertised_as_it_is() {
        for bound in ["127.0.0.1:7401", "10.0.0.9:7401", "[fd00::9]:7401"] {
            let chosen = http_advertised(addr(bound), None, addr("10.0.0.5:7400"));
            assert_eq!(chosen, addr(bound));
        }
    }

    #[test]
    fn a_wildcard_bind_is_advertised_at_the_quic_ip_with_the_http_port() {
        let quic = addr("10.0.0.5:7400");
        assert_eq!(
            http_advertised(addr("0.0.0.0:7401"), None, quic),
            addr("10.0.0.5:7401")
        );
        // `::` is dual stack: the IPv4 QUIC address is reachable through it.
        assert_eq!(
            http_advertised(addr("[::]:7401"), None, quic),
            addr("10.0.0.5:7401")
        );
        let quic6 = addr("[fd00::5]:7400");
        assert_eq!(
            http_advertised(addr("[::]:7401"), None, quic6),
            addr("[fd00::5]:7401")
        );
    }

    #[test]
    fn the_unspecified_address_is_never_advertised() {
        let cases = [
            ("0.0.0.0:7401", None, "0.0.0.0:7400"),
            ("[::]:7401", None, "[::]:7400"),
            // An IPv4-only socket cannot be reached at the IPv6 QUIC address.
            ("0.0.0.0:7401", None, "[fd00::5]:7400"),
            // A configured unspecified address is not used (validation refuses it anyway).
            ("0.0.0.0:7401", Some("0.0.0.0:7401"), "0.0.0.0:7400"),
        ];
        for (bound, configured, quic) in cases {
            let chosen = http_advertised(addr(bound), configured.map(addr), addr(quic));
            assert!(
                !chosen.ip().is_unspecified(),
                "{bound} (quic {quic}) advertised as {chosen}"
            );
            assert_eq!(chosen.port(), 7401);
            if bound.starts_with("0.0.0.0") {
                assert!(chosen.is_ipv4(), "{bound} advertised as {chosen}");
            }
        }
    }
}
