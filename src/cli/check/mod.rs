//! `foundation check`: is this node's configuration and host ready for production? Each line is
//! OK, WARN or FAIL with the fix, or SKIP when the check needs what is not there; any FAIL
//! makes the command exit non-zero, so it can gate a deployment.

mod certificate;
mod host;

/// Public for the fuzz target `cli_inputs`, which hands it certificate files.
#[doc(hidden)]
pub use certificate::not_after;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use foundation_engine::config::{NodeConfig, Profile, Security};
use foundation_engine::discovery::DiscoverySpec;

use super::node::NodeArgs;
use crate::cli::out;

/// Options of `foundation check`: the same as `foundation node`, so the node that would start
/// is the one checked.
#[derive(clap::Args, Debug, Default)]
#[command(after_help = "\
Examples:
  foundation check --profile production             what a production node here would lack
  FOUNDATION_CONFIG=/etc/foundation/node.toml foundation check
Exit status: 0 when nothing FAILs (WARNs allowed), 1 otherwise.")]
pub struct CheckArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Ready for production as it is.
    Ok,
    /// Works, but something should change before production; does not fail the command.
    Warn,
    /// Not ready: the command exits non-zero so a deployment can stop on it.
    Fail,
    /// Not checked, because what the check needs is not there (not a failure).
    Skip,
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Finding {
    /// How the check came out.
    pub level: Level,
    /// What was checked (a setting or a host property), the start of the line.
    pub what: String,
    /// What was found: the value or the reason for the level.
    pub detail: String,
    /// What the operator should do, for `Warn` and `Fail`; printed on its own line.
    pub fix: Option<String>,
}

impl Finding {
    fn new(level: Level, what: &str, detail: String, fix: Option<&str>) -> Self {
        Self {
            level,
            what: what.to_owned(),
            detail,
            fix: fix.map(str::to_owned),
        }
    }

    /// A passed check of `what`, with what was found.
    pub fn ok(what: &str, detail: String) -> Self {
        Self::new(Level::Ok, what, detail, None)
    }

    /// A check of `what` that passed with a caveat, and the `fix` that removes it.
    pub fn warn(what: &str, detail: String, fix: &str) -> Self {
        Self::new(Level::Warn, what, detail, Some(fix))
    }

    /// A failed check of `what`, and the `fix` an operator must apply before production.
    pub fn fail(what: &str, detail: String, fix: &str) -> Self {
        Self::new(Level::Fail, what, detail, Some(fix))
    }

    fn skip(what: &str, detail: String) -> Self {
        Self::new(Level::Skip, what, detail, None)
    }

    fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
            Level::Skip => "SKIP",
        };
        match &self.fix {
            Some(fix) => format!("{level} {}: {}\n     fix: {fix}", self.what, self.detail),
            None => format!("{level} {}: {}", self.what, self.detail),
        }
    }
}

/// Prints the report; an error (exit status 1) when anything failed.
pub async fn run(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let findings = match args.node.config() {
        Ok(config) => check(&config).await,
        Err(error) => vec![Finding::fail(
            "configuration",
            error.to_string(),
            "correct the setting the message names",
        )],
    };
    for finding in &findings {
        out!("{}", finding.line());
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    out!(
        "{} checks: {failed} failed, {warned} warnings",
        findings.len()
    );
    if failed > 0 {
        return Err(format!("{failed} check(s) failed").into());
    }
    Ok(())
}

/// Every check of `config` and this host.
pub async fn check(config: &NodeConfig) -> Vec<Finding> {
    let mut findings = vec![profile(config)];
    findings.extend(security(&config.security, SystemTime::now()));
    findings.extend(discovery(config).await);
    findings.push(advertised(config));
    findings.push(host::udp_port_free("QUIC", config.bind, "FOUNDATION_BIND"));
    let extra_ports = [
        ("bulk", config.transport.bulk_port, "FOUNDATION_BULK_PORT"),
        (
            "sealed",
            config.transport.sealed_port,
            "FOUNDATION_SEALED_PORT",
        ),
    ];
    for (what, setting, variable) in extra_ports {
        if let Some(port) = setting.port() {
            let addr = SocketAddr::new(config.bind.ip(), port);
            findings.push(host::udp_port_free(what, addr, variable));
        }
    }
    findings.push(http(config));
    if let Some(addr) = config.http {
        findings.push(host::tcp_port_free(addr));
    }
    if let Some(dir) = &config.data_dir {
        findings.push(host::data_dir_writable(dir));
    }
    findings.push(host::file_descriptors());
    findings.extend(host::udp_buffers());
    findings.push(Finding::skip(
        "clock offset",
        "not measured: peers' clocks are seen only by a running cluster".into(),
    ));
    findings
}

fn profile(config: &NodeConfig) -> Finding {
    match config.profile {
        Profile::Production => Finding::ok("profile", "production".into()),
        Profile::Development => Finding::warn(
            "profile",
            "development: fast timers, the development secret, local discovery".into(),
            "--profile production (FOUNDATION_PROFILE=production)",
        ),
    }
}

/// Certificates that expire within this are warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

fn security(security: &Security, now: SystemTime) -> Vec<Finding> {
    match security {
        Security::DevelopmentSecret => vec![Finding::warn(
            "secret",
            "the development secret, derived from the cluster name: anyone who knows the name can join".into(),
            "FOUNDATION_SECRET=$(openssl rand -hex 24), the same on every node",
        )],
        Security::Secret(secret) if secret.chars().count() < 32 => vec![Finding::warn(
            "secret",
            format!("{} characters", secret.chars().count()),
            "a longer random secret: openssl rand -hex 24",
        )],
        Security::Secret(secret) => vec![Finding::ok(
            "secret",
            format!("{} characters", secret.chars().count()),
        )],
        Security::Files {
            ca, certificate, ..
        } => [("CA certificate", ca), ("node certificate", certificate)]
            .into_iter()
            .map(|(what, path)| certificate_expiry(what, path, now))
            .collect(),
    }
}

fn certificate_expiry(what: &str, path: &std::path::Path, now: SystemTime) -> Finding {
    let what = format!("{what} {}", path.display());
    let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
    match read.and_then(|pem| certificate::not_after(&pem)) {
        Err(why) => Finding::fail(
            &what,
            why,
            "point the setting at a readable PEM certificate",
        ),
        Ok(expiry) => match expiry.duration_since(now) {
            Err(_) => Finding::fail(&what, "expired".into(), "issue a new certificate"),
            Ok(left) if left < EXPIRY_WARNING => Finding::warn(
                &what,
                format!("expires in {} days", left.as_secs() / 86_400),
                "renew it before it expires: nodes refuse expired certificates",
            ),
            Ok(left) => Finding::ok(&what, format!("valid for {} days", left.as_secs() / 86_400)),
        },
    }
}

/// Each configured strategy that names hosts is resolved now.
async fn discovery(config: &NodeConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    for spec in &config.discovery {
        let finding = match spec {
            DiscoverySpec::Static { seeds } => resolve_all("seeds", seeds).await,
            DiscoverySpec::Dns {
                srv: true, name, ..
            } => Finding::skip(
                "discovery dns",
                format!("SRV records of {name} are not resolved by this check"),
            ),
            DiscoverySpec::Dns {
                name,
                server: Some(server),
                ..
            } => Finding::skip(
                "discovery dns",
                format!("{name} is resolved through {server} at start, not by this check"),
            ),
            DiscoverySpec::Dns { name, .. } => {
                resolve_all("discovery dns", &[format!("{name}:0")]).await
            }
            DiscoverySpec::Mdns if config.profile == Profile::Production => Finding::warn(
                "discovery mdns",
                "mDNS in production: only peers on this network segment are found".into(),
                "static seeds or a DNS name (FOUNDATION_SEEDS, FOUNDATION_DNS_NAME)",
            ),
            _ => continue,
        };
        findings.push(finding);
    }
    let env = foundation_engine::discovery::Environment::from_process();
    let described = super::node::discovery_lines(config, &env);
    findings.insert(0, Finding::ok("discovery", described.join("; ")));
    findings
}

/// Resolves every `host:port`; FAIL when none resolves, WARN when some do not.
async fn resolve_all(what: &str, targets: &[String]) -> Finding {
    let mut resolved = 0;
    let mut failures = Vec::new();
    for target in targets {
        let lookup = tokio::net::lookup_host(target.as_str());
        let found = tokio::time::timeout(Duration::from_secs(3), lookup)
            .await
            .map(|result| result.map(Iterator::count));
        match found {
            Ok(Ok(n)) if n > 0 => resolved += 1,
            Ok(Ok(_)) => failures.push(format!("{target}: no addresses")),
            Ok(Err(error)) => failures.push(format!("{target}: {error}")),
            Err(_) => failures.push(format!("{target}: no answer within 3 s")),
        }
    }
    let fix = "check the names and this host's DNS resolver";
    match (resolved, failures.is_empty()) {
        (_, true) => Finding::ok(what, format!("{resolved} of {} resolve", targets.len())),
        (0, false) => Finding::fail(what, failures.join("; "), fix),
        (_, false) => Finding::warn(what, failures.join("; "), fix),
    }
}

fn advertised(config: &NodeConfig) -> Finding {
    let transport = config.transport_config();
    let addr = foundation_transport::advertise::advertised(
        transport.bind,
        transport.advertise,
        &transport.advertise_toward,
    );
    let what = "advertised address";
    if config.bind.ip().is_loopback() {
        return Finding::ok(what, format!("{addr} (loopback: this machine only)"));
    }
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        return Finding::fail(
            what,
            format!("{addr}: peers on other hosts could not dial it"),
            "FOUNDATION_ADVERTISE=<this host's address>:<port>",
        );
    }
    match config.advertise {
        Some(_) => Finding::ok(what, format!("{addr} (configured)")),
        None => Finding::ok(what, format!("{addr} (derived from the default route)")),
    }
}

fn http(config: &NodeConfig) -> Finding {
    let Some(addr) = config.http else {
        return Finding::warn(
            "HTTP API",
            "off: no /health for probes, no /metrics".into(),
            "FOUNDATION_HTTP=127.0.0.1:7401",
        );
    };
    if config.http_access.writes_possible(addr) {
        return Finding::ok("HTTP API", format!("{addr}"));
    }
    Finding::warn(
        "HTTP API",
        format!("{addr} is not loopback and has no token: it serves reads only"),
        "FOUNDATION_HTTP_TOKEN=$(openssl rand -hex 24) to allow writes from operators",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_development_node_warns_and_fails_nothing_of_its_own() {
        let config = NodeConfig::defaults(Profile::Development);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let findings = runtime.block_on(check(&config));
        let of = |what: &str| findings.iter().find(|f| f.what == what).unwrap().level;
        assert_eq!(of("profile"), Level::Warn);
        assert_eq!(of("secret"), Level::Warn);
        assert!(findings.iter().all(|f| !f.line().is_empty()));
    }

    #[test]
    fn unresolvable_seeds_fail() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seeds = vec![
            "127.0.0.1:7400".to_owned(),
            "no-such-host.invalid:7400".to_owned(),
        ];
        let some = runtime.block_on(resolve_all("seeds", &seeds));
        assert_eq!(some.level, Level::Warn, "{some:?}");
        let none = runtime.block_on(resolve_all("seeds", &seeds[1..]));
        assert_eq!(none.level, Level::Fail, "{none:?}");
    }

    #[test]
    fn an_expired_certificate_fails_and_one_near_expiry_warns() {
        let dir = std::env::temp_dir().join(format!("foundation-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, year: i32| {
            let mut params = rcgen::CertificateParams::new(vec!["x.foundation".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let path = dir.join(name);
            std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
            path
        };
        let old = write("old.pem", 2020);
        let new = write("new.pem", 2040);
        let now = SystemTime::now();
        assert_eq!(certificate_expiry("ca", &old, now).level, Level::Fail);
        assert_eq!(certificate_expiry("ca", &new, now).level, Level::Ok);
        let later = std::time::UNIX_EPOCH + Duration::from_secs(2_208_988_800 - 86_400);
        assert_eq!(certificate_expiry("ca", &new, later).level, Level::Warn);
        assert_eq!(
            certificate_expiry("ca", &dir.join("missing.pem"), now).level,
            Level::Fail
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
