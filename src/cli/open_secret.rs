//! The loud warning a development node gives when a member of its cluster turns up from
//! another host. The development secret is derived from the cluster name, and mDNS adverts
//! carry that name, so on a shared network anyone who hears an advert can join; on one machine
//! it is harmless. The warning comes once, at the first member seen on another host.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Watches new members for one on another host, while the development secret is in use.
pub struct OpenSecretWarning {
    armed: bool,
    own: BTreeSet<IpAddr>,
}

impl OpenSecretWarning {
    /// `development_secret`: whether the node uses the secret derived from the cluster name.
    pub fn new(development_secret: bool) -> Self {
        let own = if_addrs::get_if_addrs()
            .map(|interfaces| interfaces.iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        Self {
            armed: development_secret,
            own,
        }
    }

    /// The warning to give for a member seen at `peer`, the first time one is on another host.
    pub fn check(&mut self, cluster: &str, peer: IpAddr) -> Option<String> {
        if !self.armed || !on_another_host(peer, &self.own) {
            return None;
        }
        self.armed = false;
        Some(format!(
            "a member of cluster {cluster:?} joined from another host ({peer}). This cluster uses \
             the development secret, which is derived from the cluster name that mDNS adverts \
             carry: anyone on this network can join it. Set the same FOUNDATION_SECRET (16+ \
             characters) on every node to make the cluster private."
        ))
    }
}

/// Whether `peer` is neither loopback nor one of this host's own addresses.
fn on_another_host(peer: IpAddr, own: &BTreeSet<IpAddr>) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    !peer.is_loopback() && !own.contains(&peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(own: &[&str]) -> OpenSecretWarning {
        OpenSecretWarning {
            armed: true,
            own: own.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn only_a_member_on_another_host_warns_and_only_once() {
        let mut check = warning(&["10.0.0.5"]);
        for here in ["127.0.0.1", "::1", "10.0.0.5", "::ffff:127.0.0.1"] {
            assert_eq!(check.check("demo", here.parse().unwrap()), None, "{here}");
        }
        let said = check.check("demo", "10.0.0.9".parse().unwrap());
        assert!(said.is_some_and(|s| s.contains("FOUNDATION_SECRET") && s.contains("10.0.0.9")));
        assert_eq!(
            check.check("demo", "10.0.0.10".parse().unwrap()),
            None,
            "once"
        );
    }

    #[test]
    fn a_real_secret_never_warns() {
        let mut check = OpenSecretWarning::new(false);
        assert_eq!(check.check("demo", "10.0.0.9".parse().unwrap()), None);
    }
}
