//! The federation scenario file (TOML): a file with `[[cluster]]` tables. Each cluster holds
//! what a one-cluster file holds (`nodes`, `profile`, `network`, `groups`, `[[cluster.at]]`,
//! `[cluster.checks]`; see [`crate::scenario::file`]) and its gateways and exports. Every
//! error names the line and the problem.
//!
//! ```toml
//! name = "my-federation"
//! duration = "45s"
//! visible_within = "3s"      # optional (3s): exports seen across a link, links moved off a
//!                            # crashed gateway, within this
//! calls_settle = "5s"        # optional (visible_within + 2 probe intervals): calls may fail
//!                            # this long after a heal or a gateway start or stop
//! links = "mesh"             # or pairs: [["east", "west"], ["east", "north"]]
//!
//! [wan]                      # optional; every WAN path, one way
//! latency = "40ms"
//! jitter = "20ms"            # uniform, added to latency
//! loss = 0.01
//! probe_interval = "1s"      # gateway probing (WAN timers)
//! probe_timeout = "500ms"
//! down_after = 3
//!
//! [[cluster]]
//! name = "east"
//! nodes = 5
//! gateways = [0, 1]          # node slots running a gateway, in failover order
//! exports = ["billing"]      # exported when named here and healthy
//!
//! [[cluster.at]]             # as `[[at]]` in a one-cluster file, in this cluster
//! time = "2s"
//! register = [2, 3]
//! service = "billing"
//!
//! [[cut]]                    # a WAN cut between clusters
//! time = "10s"
//! heal = "20s"
//! side = ["east"]
//! other = ["west"]           # optional: every other cluster
//!
//! [[calls]]                  # application calls, like `rpc().call_in`
//! time = "5s"
//! for = "30s"
//! from = "west"              # from random running nodes of this cluster
//! to = "east"
//! service = "billing"
//! rate = 20.0                # calls per second
//! deadline = "500ms"         # optional, default 500ms
//! idempotent = true          # optional, default false: retried after a lost attempt too
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use foundation_core::federation::WanTimers;
use foundation_core::identity::ClusterName;
use serde::Deserialize;
use toml::Spanned;

use super::calls::CallSpec;
use super::wan::{WanCut, WanModel};
use super::{validate, ClusterSpec, FederationScenario};
use crate::scenario::file::{
    build, duration, line_of, split_line, toml_error, RawAt, RawChecks, RawLink, RawNodes,
    RawScenario, ScenarioError,
};

/// The bound when the file names none.
const VISIBLE_WITHIN: Duration = Duration::from_secs(3);
/// A call's deadline when its stream names none.
const CALL_DEADLINE: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    name: Option<String>,
    duration: Option<Spanned<String>>,
    visible_within: Option<Spanned<String>>,
    calls_settle: Option<Spanned<String>>,
    links: Option<Spanned<RawLinks>>,
    wan: Option<Spanned<RawWan>>,
    cluster: Vec<Spanned<RawCluster>>,
    #[serde(default)]
    cut: Vec<Spanned<RawCut>>,
    #[serde(default)]
    calls: Vec<Spanned<RawCalls>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLinks {
    Topology(String),
    Pairs(Vec<(String, String)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWan {
    latency: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    probe_interval: Option<String>,
    probe_timeout: Option<String>,
    down_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Spanned<String>,
    gateways: Spanned<Vec<usize>>,
    #[serde(default)]
    exports: Vec<String>,
    nodes: Option<Spanned<usize>>,
    profile: Option<Spanned<String>>,
    network: Option<Spanned<RawLink>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<RawNodes>>,
    #[serde(default)]
    at: Vec<Spanned<RawAt>>,
    checks: Option<Spanned<RawChecks>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCut {
    time: String,
    heal: String,
    side: Vec<String>,
    other: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalls {
    time: String,
    #[serde(rename = "for")]
    lasting: String,
    from: String,
    to: String,
    service: String,
    rate: f64,
    deadline: Option<String>,
    #[serde(default)]
    idempotent: bool,
}

/// Parses a federation scenario file. `source` names it in the replay command.
pub fn parse(text: &str, source: &str) -> Result<FederationScenario, ScenarioError> {
    let raw: RawFederation = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let at = |span: Range<usize>| {
        move |problem: String| ScenarioError {
            line: line_of(text, span.start),
            problem,
        }
    };
    let whole = |problem: String| ScenarioError { line: 1, problem };
    let duration_of = |d: &Option<Spanned<String>>, default: Duration| match d {
        Some(d) => duration(d.get_ref()).map_err(at(d.span())),
        None => Ok(default),
    };
    let total = duration_of(&raw.duration, Duration::from_secs(30))?;
    let mut clusters = Vec::new();
    for cluster in &raw.cluster {
        clusters.push(cluster_spec(cluster.get_ref(), total, text, source)?);
    }
    let names: Vec<String> = clusters.iter().map(|c| c.name.to_string()).collect();
    let (wan, timers) = match &raw.wan {
        Some(w) => wan(w.get_ref()).map_err(at(w.span()))?,
        None => wan(&RawWan::empty()).map_err(whole)?,
    };
    let links = match &raw.links {
        Some(l) => links(l.get_ref(), &names).map_err(at(l.span()))?,
        None => links(&RawLinks::Topology("mesh".into()), &names).map_err(whole)?,
    };
    let mut cuts = Vec::new();
    for c in &raw.cut {
        let parsed = cut(c.get_ref(), &names)
            .and_then(|cut| validate::cut_ok(&cut, names.len()).map(|()| cut));
        cuts.push(parsed.map_err(at(c.span()))?);
    }
    let mut calls = Vec::new();
    for c in &raw.calls {
        let parsed = call_spec(c.get_ref(), &names)
            .and_then(|spec| validate::call_ok(&spec, names.len()).map(|()| spec));
        calls.push(parsed.map_err(at(c.span()))?);
    }
    let visible_within = duration_of(&raw.visible_within, VISIBLE_WITHIN)?;
    let scenario = FederationScenario {
        name: raw.name.clone().unwrap_or_else(|| "federation-file".into()),
        clusters,
        links,
        wan,
        cuts,
        timers,
        visible_within,
        calls_settle: duration_of(
            &raw.calls_settle,
            visible_within + 2 * timers.probe_interval,
        )?,
        duration: total,
        calls,
        replay_source: format!("--file {source}"),
    };
    scenario.validate().map_err(|p| split_line(&p))?;
    Ok(scenario)
}

/// One `[[cluster]]`: its one-cluster scenario, built as a one-cluster file's would be.
fn cluster_spec(
    raw: &RawCluster,
    duration: Duration,
    text: &str,
    source: &str,
) -> Result<ClusterSpec, ScenarioError> {
    let placed = |span: Range<usize>| {
        move |problem: String| ScenarioError {
            line: line_of(text, span.start),
            problem,
        }
    };
    let name = ClusterName::new(raw.name.get_ref().as_str())
        .map_err(|e| placed(raw.name.span())(e.to_string()))?;
    // Field by field: the one-cluster tables a cluster may not have (`replication`,
    // `storage`, `cache`, its own `duration`) stay empty.
    let mut one = RawScenario::default();
    one.name = Some(name.to_string());
    one.nodes = raw.nodes.clone();
    one.profile = raw.profile.clone();
    one.network = raw.network.clone();
    one.groups = raw.groups.clone();
    one.at = raw.at.clone();
    one.checks = raw.checks.clone();
    let mut scenario = build(&one, text, source)?;
    scenario.duration = duration;
    let spec = ClusterSpec {
        name,
        scenario,
        gateways: raw.gateways.get_ref().clone(),
        exports: raw.exports.clone(),
    };
    validate::cluster_ok(&spec).map_err(placed(raw.gateways.span()))?;
    Ok(spec)
}

impl RawWan {
    fn empty() -> Self {
        Self {
            latency: None,
            jitter: None,
            loss: None,
            probe_interval: None,
            probe_timeout: None,
            down_after: None,
        }
    }
}

/// The WAN model and the gateways' timers (defaults: 40 ms, 20 ms jitter, no loss; the
/// engine's WAN timers).
fn wan(raw: &RawWan) -> Result<(WanModel, WanTimers), String> {
    let or =
        |text: &Option<String>, default: Duration| text.as_deref().map_or(Ok(default), duration);
    let defaults = WanTimers::default();
    let model = WanModel {
        latency: or(&raw.latency, Duration::from_millis(40))?,
        jitter: or(&raw.jitter, Duration::from_millis(20))?,
        loss: raw.loss.unwrap_or(0.0),
    };
    let timers = WanTimers {
        probe_interval: or(&raw.probe_interval, defaults.probe_interval)?,
        probe_timeout: or(&raw.probe_timeout, defaults.probe_timeout)?,
        down_after: raw.down_after.unwrap_or(defaults.down_after),
    };
    if !(0.0..=1.0).contains(&model.loss) {
        return Err(format!("loss must be within 0..1, got {}", model.loss));
    }
    timers.validate()?;
    Ok((model, timers))
}

fn cluster_index(name: &str, names: &[String]) -> Result<usize, String> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        format!(
            "no cluster is named {name:?} (clusters: {})",
            names.join(", ")
        )
    })
}

fn links(raw: &RawLinks, names: &[String]) -> Result<Vec<(usize, usize)>, String> {
    match raw {
        RawLinks::Topology(t) if t == "mesh" => Ok((0..names.len())
            .flat_map(|a| (a + 1..names.len()).map(move |b| (a, b)))
            .collect()),
        RawLinks::Topology(t) => Err(format!(
            "links must be \"mesh\" or a list of pairs of cluster names, got {t:?}"
        )),
        RawLinks::Pairs(pairs) => pairs
            .iter()
            .map(|(a, b)| Ok((cluster_index(a, names)?, cluster_index(b, names)?)))
            .collect(),
    }
}

fn cut(raw: &RawCut, names: &[String]) -> Result<WanCut, String> {
    let side = raw
        .side
        .iter()
        .map(|n| cluster_index(n, names))
        .collect::<Result<Vec<_>, _>>()?;
    let other = match &raw.other {
        Some(other) => other
            .iter()
            .map(|n| cluster_index(n, names))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..names.len()).filter(|c| !side.contains(c)).collect(),
    };
    Ok(WanCut {
        from: duration(&raw.time)?,
        to: duration(&raw.heal)?,
        side,
        other,
    })
}

fn call_spec(raw: &RawCalls, names: &[String]) -> Result<CallSpec, String> {
    let start = duration(&raw.time)?;
    let deadline = match &raw.deadline {
        Some(d) => duration(d)?,
        None => CALL_DEADLINE,
    };
    Ok(CallSpec {
        from: cluster_index(&raw.from, names)?,
        to: cluster_index(&raw.to, names)?,
        service: raw.service.clone(),
        start,
        stop: start.saturating_add(duration(&raw.lasting)?),
        rate: raw.rate,
        deadline,
        idempotent: raw.idempotent,
    })
}
