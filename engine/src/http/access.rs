//! Who may use which route. Pure decisions over a request's facts, so every case is checked
//! without a socket.
//!
//! Three attacks shape the rules:
//! - a web page open in a browser on the node's machine sends a cross-site `POST`/`PUT` to
//!   127.0.0.1 (the browser adds `Origin`, which names the page's site);
//! - a DNS-rebinding page makes its own host name resolve to 127.0.0.1 and then talks to the
//!   node "same-origin" (the browser sends `Host: attacker.example`);
//! - another machine reaches an API bound to a public interface.
//!
//! So: `Host` must be an address literal, `localhost` or a name the operator allowed; a write
//! carrying an `Origin` must come from the node's own origin or an allowed one; and writes need
//! the bearer token when one is set, or else come from loopback to a loopback-bound server.
//! `/health` and `/metrics` are exempt from the `Host` rule: probes and scrapers address nodes
//! by whatever name their platform gives them, and neither route reveals or changes state.

use std::net::{IpAddr, SocketAddr};

use hyper::StatusCode;

/// The access policy of a server; the default allows loopback writes without a token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// When set, every write must carry `Authorization: Bearer <token>`, from any address.
    pub token: Option<String>,
    /// Origins (`scheme://host[:port]`) allowed to write besides the node's own.
    pub allowed_origins: Vec<String>,
    /// Host names (without port) accepted in `Host` besides address literals and `localhost`.
    pub allowed_hosts: Vec<String>,
}

/// Never shows the token: configurations get logged.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// What a route does, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// `/health` and `/metrics`: open to any `Host`.
    Probe,
    /// Any other `GET`.
    Read,
    /// A write route.
    Write,
}

/// The facts of one request the policy needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts<'a> {
    pub peer: SocketAddr,
    pub bound: SocketAddr,
    pub kind: RouteKind,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// Why a request was refused: its status and a reason for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn forbidden(reason: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason,
        }
    }
}

impl Access {
    /// Whether the request may proceed; the refusal says why not.
    pub(crate) fn admit(&self, facts: &Facts<'_>) -> Result<(), Refusal> {
        if facts.kind == RouteKind::Probe {
            return Ok(());
        }
        let host = self.check_host(facts.host)?;
        if facts.kind == RouteKind::Write {
            self.check_origin(facts.origin, host)?;
            self.check_writer(facts)?;
        }
        Ok(())
    }

    /// Whether writes are possible at all on a server bound to `bound`: without a token, only
    /// a loopback-bound server takes them. For the start-up warning.
    pub fn writes_possible(&self, bound: SocketAddr) -> bool {
        self.token.is_some() || bound.ip().is_loopback()
    }

    /// The `Host` header's value, if it names this node acceptably.
    fn check_host<'h>(&self, host: Option<&'h str>) -> Result<&'h str, Refusal> {
        let Some(host) = host else {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                reason: "a Host header is required".into(),
            });
        };
        let name = host_name(host);
        let accepted = name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name));
        if accepted {
            Ok(host)
        } else {
            Err(Refusal::forbidden(format!(
                "Host {host:?} is not this node's address; add the name to the node's allowed HTTP hosts to use it"
            )))
        }
    }

    /// A browser names the page's site in `Origin`; only the node's own pages and allowed
    /// origins may write. Clients that are not browsers send no `Origin`.
    fn check_origin(&self, origin: Option<&str>, host: &str) -> Result<(), Refusal> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let own = origin
            .strip_prefix("http://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        let allowed = self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin));
        if own || allowed {
            Ok(())
        } else {
            Err(Refusal::forbidden(format!(
                "writes from web pages of origin {origin:?} are refused; allow the origin in the node's configuration if it is trusted"
            )))
        }
    }

    fn check_writer(&self, facts: &Facts<'_>) -> Result<(), Refusal> {
        if let Some(token) = &self.token {
            return if bearer(facts.authorization).is_some_and(|sent| same_secret(sent, token)) {
                Ok(())
            } else {
                Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    reason: "writes need the node's HTTP token: Authorization: Bearer <token> (the CLI sends FOUNDATION_HTTP_TOKEN)".into(),
                })
            };
        }
        if !facts.bound.ip().is_loopback() {
            return Err(Refusal::forbidden(format!(
                "this API is bound to {} (not loopback) and has no token, so it takes no writes; set FOUNDATION_HTTP_TOKEN",
                facts.bound
            )));
        }
        if !is_loopback(facts.peer.ip()) {
            return Err(Refusal::forbidden(format!(
                "writes are accepted only from this machine (loopback), not from {}",
                facts.peer.ip()
            )));
        }
        Ok(())
    }
}

/// The host part of a `Host` value: `[::1]:80` → `::1`, `a:80` → `a`.
fn host_name(host: &str) -> &str {
    if host.parse::<IpAddr>().is_ok() {
        return host;
    }
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without stopping at the first difference, so response time does not reveal how
/// much of a guess was right.
fn same_secret(sent: &str, token: &str) -> bool {
    let (a, b) = (sent.as_bytes(), token.as_bytes());
    let differing = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    differing == 0
}

/// Loopback, including IPv4 loopback mapped into IPv6.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(kind: RouteKind, host: Option<&'a str>, origin: Option<&'a str>) -> Facts<'a> {
        Facts {
            peer: "127.0.0.1:5000".parse().unwrap(),
            bound: "127.0.0.1:7401".parse().unwrap(),
            kind,
            host,
            origin,
            authorization: None,
        }
    }

    #[test]
    fn host_must_be_an_address_localhost_or_allowed() {
        let access = Access::default();
        for host in ["127.0.0.1:7401", "[::1]:7401", "localhost:7401", "10.0.0.5"] {
            assert!(
                access
                    .admit(&facts(RouteKind::Read, Some(host), None))
                    .is_ok(),
                "{host}"
            );
        }
        let rebound = access.admit(&facts(RouteKind::Read, Some("evil.example:7401"), None));
        assert_eq!(rebound.unwrap_err().status, StatusCode::FORBIDDEN);
        let missing = access.admit(&facts(RouteKind::Write, None, None));
        assert_eq!(missing.unwrap_err().status, StatusCode::BAD_REQUEST);
        // Probes answer whatever name the platform uses.
        assert!(access
            .admit(&facts(RouteKind::Probe, Some("node-3.svc:7401"), None))
            .is_ok());
        let named = Access {
            allowed_hosts: vec!["node-3.svc".into()],
            ..Access::default()
        };
        assert!(named
            .admit(&facts(RouteKind::Read, Some("NODE-3.svc:7401"), None))
            .is_ok());
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let access = Access::default();
        let host = Some("127.0.0.1:7401");
        let own = access.admit(&facts(
            RouteKind::Write,
            host,
            Some("http://127.0.0.1:7401"),
        ));
        assert!(own.is_ok());
        let page = access.admit(&facts(RouteKind::Write, host, Some("https://evil.example")));
        assert_eq!(page.unwrap_err().status, StatusCode::FORBIDDEN);
        // A read with an Origin is harmless: the browser will not let the page see the answer.
        assert!(access
            .admit(&facts(RouteKind::Read, host, Some("https://evil.example")))
            .is_ok());
        let allowed = Access {
            allowed_origins: vec!["https://ops.example".into()],
            ..Access::default()
        };
        assert!(allowed
            .admit(&facts(RouteKind::Write, host, Some("https://ops.example")))
            .is_ok());
    }

    #[test]
    fn without_a_token_only_loopback_writes_to_a_loopback_server() {
        let access = Access::default();
        let mut write = facts(RouteKind::Write, Some("127.0.0.1:7401"), None);
        assert!(access.admit(&write).is_ok());
        write.peer = "10.0.0.9:5000".parse().unwrap();
        assert_eq!(
            access.admit(&write).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        write.peer = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert!(access.admit(&write).is_ok());
        write.bound = "0.0.0.0:7401".parse().unwrap();
        let public = access.admit(&write).unwrap_err();
        assert_eq!(public.status, StatusCode::FORBIDDEN);
        assert!(
            public.reason.contains("FOUNDATION_HTTP_TOKEN"),
            "{public:?}"
        );
        assert!(!access.writes_possible(write.bound));
    }

    #[test]
    fn a_token_lets_any_address_write_and_nothing_else_does() {
        let access = Access {
            token: Some("s3cret-token".into()),
            ..Access::default()
        };
        let mut write = facts(RouteKind::Write, Some("10.0.0.5:7401"), None);
        write.peer = "10.0.0.9:5000".parse().unwrap();
        write.bound = "0.0.0.0:7401".parse().unwrap();
        assert_eq!(
            access.admit(&write).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Basic s3cret-token",
        ] {
            write.authorization = Some(wrong);
            assert!(access.admit(&write).is_err(), "{wrong}");
        }
        write.authorization = Some("Bearer s3cret-token");
        assert!(access.admit(&write).is_ok());
        assert!(access.writes_possible(write.bound));
    }

    #[test]
    fn host_names_are_split_from_ports() {
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("a.example:80"), "a.example");
        assert_eq!(host_name("a.example"), "a.example");
        assert_eq!(host_name("::1"), "::1");
    }
}
