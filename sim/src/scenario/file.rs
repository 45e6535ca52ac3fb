//! The scenario file format (TOML). Every error names the line and the problem.
//!
//! ```toml
//! name = "my-partition"
//! nodes = 50                  # --nodes overrides it
//! duration = "60s"
//! profile = "development"     # or "production": membership timers
//!
//! [network]                   # optional; defaults to a quiet LAN
//! latency = "1ms"
//! jitter = "500us"
//! loss = 0.01
//! duplicate = 0.0
//! reorder = 0.0
//! reorder_delay = "20ms"
//!
//! [groups]                    # node selections: "all", 3, [1, 2], "0..10", "0%..40%", a group name
//! minority = "60%..100%"
//! majority = "0%..60%"
//!
//! [[at]]
//! time = "10s"
//! partition = ["minority", "majority"]   # or partition_one_way = [from, to]
//!
//! [[at]]
//! time = "25s"
//! heal = true
//!
//! [[at]]
//! time = "30s"
//! stall = 3                   # with: for = "2s"
//! for = "2s"
//!
//! [[at]]
//! time = "35s"
//! register = "all"            # each node's application registers service instances
//! service = "billing"         # a service name: A-Z a-z 0-9 . _ -
//! instances = 2               # how many each node adds; default 1
//!
//! [[at]]
//! time = "50s"
//! deregister = [1, 2]         # removes every instance of the service on these nodes
//! service = "billing"
//!
//! # other actions: crash = sel · stop = sel · restart = sel (identity = "same" | "new")
//! # skew = sel (offset = "250ms" or "-250ms", drift_ppm = 100) · network = { ...as above... }
//! # join = sel (via = 0)
//! # A scenario that registers anything is also checked by the `registry-consistent`
//! # invariant (see `invariants::registry`).
//!
//! [checks]
//! convergence = "30s"         # every live node agrees within this after each disturbance
//! detection = "10s"           # every survivor sees a crash within this
//! false_positives = true      # whether a false positive fails the run
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_engine::membership::MembershipConfig;
use foundation_engine::services::record::check_service_name;
use serde::Deserialize;
use toml::Spanned;

use super::{Check, Scenario, Scheduled};
use crate::faults::{Fault, Identity, Nodes};
use crate::network::LinkModel;

/// A scenario file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ScenarioError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    nodes: Option<Spanned<usize>>,
    duration: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
    network: Option<Spanned<RawLink>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<RawNodes>>,
    #[serde(default)]
    at: Vec<Spanned<RawAt>>,
    checks: Option<Spanned<RawChecks>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawLink {
    latency: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    reorder_delay: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawNodes {
    One(usize),
    List(Vec<usize>),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAt {
    time: String,
    partition: Option<Vec<RawNodes>>,
    partition_one_way: Option<Vec<RawNodes>>,
    heal: Option<bool>,
    stall: Option<RawNodes>,
    #[serde(rename = "for")]
    stall_for: Option<String>,
    crash: Option<RawNodes>,
    stop: Option<RawNodes>,
    restart: Option<RawNodes>,
    identity: Option<String>,
    skew: Option<RawNodes>,
    offset: Option<String>,
    drift_ppm: Option<i64>,
    network: Option<RawLink>,
    join: Option<RawNodes>,
    via: Option<usize>,
    register: Option<RawNodes>,
    deregister: Option<RawNodes>,
    service: Option<String>,
    instances: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    convergence: Option<String>,
    detection: Option<String>,
    false_positives: Option<bool>,
}

/// Parses a scenario file. `source` names it in the replay command (`--file <source>`).
pub fn parse(text: &str, source: &str) -> Result<Scenario, ScenarioError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError {
        line: e.span().map_or(1, |span| line_of(span.start)),
        problem: e.message().trim().to_string(),
    })?;
    let at = |span: std::ops::Range<usize>| {
        move |problem: String| ScenarioError {
            line: line_of(span.start),
            problem,
        }
    };
    let mut scenario = Scenario::new(raw.name.as_deref().unwrap_or("file"));
    scenario.replay_source = format!("--file {source}");
    if let Some(nodes) = &raw.nodes {
        scenario.nodes = *nodes.get_ref();
    }
    if let Some(d) = &raw.duration {
        scenario.duration = duration(d.get_ref()).map_err(at(d.span()))?;
    }
    if let Some(p) = &raw.profile {
        scenario.membership = profile(p.get_ref()).map_err(at(p.span()))?;
    }
    if let Some(n) = &raw.network {
        scenario.network = link(n.get_ref(), LinkModel::lan()).map_err(at(n.span()))?;
    }
    for (name, nodes) in &raw.groups {
        let parsed = selection(nodes.get_ref()).map_err(at(nodes.span()))?;
        scenario.groups.insert(name.clone(), parsed);
    }
    for entry in &raw.at {
        let line = line_of(entry.span().start);
        let (time, fault) = action(entry.get_ref()).map_err(at(entry.span()))?;
        scenario.schedule.push(Scheduled {
            at: time,
            fault,
            line: Some(line),
        });
    }
    if let Some(c) = &raw.checks {
        scenario = checks(scenario, c.get_ref()).map_err(at(c.span()))?;
    }
    scenario
        .validate()
        .map_err(|problem| split_line(&problem))?;
    Ok(scenario)
}

/// `validate` puts "line N: " in front of problems it can place; keep the number.
fn split_line(problem: &str) -> ScenarioError {
    let placed = problem
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "));
    match placed.and_then(|(n, p)| Some((n.parse().ok()?, p))) {
        Some((line, p)) => ScenarioError {
            line,
            problem: p.to_string(),
        },
        None => ScenarioError {
            line: 1,
            problem: problem.to_string(),
        },
    }
}

fn action(raw: &RawAt) -> Result<(Duration, Fault), String> {
    let time = duration(&raw.time)?;
    let mut found: Vec<(&str, Fault)> = Vec::new();
    if let Some(pair) = &raw.partition {
        let (a, b) = two(pair, "partition")?;
        found.push(("partition", Fault::Partition(a, b)));
    }
    if let Some(pair) = &raw.partition_one_way {
        let (a, b) = two(pair, "partition_one_way")?;
        found.push(("partition_one_way", Fault::PartitionOneWay(a, b)));
    }
    if raw.heal == Some(true) {
        found.push(("heal", Fault::Heal));
    }
    if let Some(n) = &raw.stall {
        let d = raw
            .stall_for
            .as_deref()
            .ok_or("stall needs `for = \"<duration>\"`")?;
        found.push(("stall", Fault::Stall(selection(n)?, duration(d)?)));
    }
    if let Some(n) = &raw.crash {
        found.push(("crash", Fault::Crash(selection(n)?)));
    }
    if let Some(n) = &raw.stop {
        found.push(("stop", Fault::Stop(selection(n)?)));
    }
    if let Some(n) = &raw.restart {
        found.push((
            "restart",
            Fault::Restart(selection(n)?, identity(raw.identity.as_deref())?),
        ));
    }
    if let Some(n) = &raw.skew {
        let offset_us = raw.offset.as_deref().map_or(Ok(0), signed_micros)?;
        let drift_ppm = raw.drift_ppm.unwrap_or(0);
        found.push((
            "skew",
            Fault::ClockSkew {
                nodes: selection(n)?,
                offset_us,
                drift_ppm,
            },
        ));
    }
    if let Some(l) = &raw.network {
        found.push(("network", Fault::Network(link(l, LinkModel::lan())?)));
    }
    if let Some(n) = &raw.join {
        found.push(("join", Fault::Join(selection(n)?, raw.via.unwrap_or(0))));
    }
    registry_actions(raw, &mut found)?;
    match found.len() {
        1 => Ok((time, found.remove(0).1)),
        0 => Err("[[at]] entry has no action (partition, partition_one_way, heal, stall, crash, stop, restart, skew, network, join, register, deregister)".into()),
        _ => {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            Err(format!("[[at]] entry has {} actions ({}); give each its own [[at]]", names.len(), names.join(", ")))
        }
    }
}

/// `register` and `deregister`, with the `service` and `instances` that go with them.
fn registry_actions(raw: &RawAt, found: &mut Vec<(&str, Fault)>) -> Result<(), String> {
    let service = || -> Result<String, String> {
        let what = if raw.register.is_some() {
            "register"
        } else {
            "deregister"
        };
        let service = raw
            .service
            .as_deref()
            .ok_or_else(|| format!("{what} needs `service = \"<name>\"`"))?;
        check_service_name(service).map_err(|e| e.to_string())?;
        Ok(service.to_owned())
    };
    if let Some(n) = &raw.register {
        let instances = raw.instances.unwrap_or(1);
        if instances == 0 {
            return Err("register needs at least one instance (`instances = 1` or more)".into());
        }
        found.push((
            "register",
            Fault::Register {
                nodes: selection(n)?,
                service: service()?,
                instances,
            },
        ));
    }
    if let Some(n) = &raw.deregister {
        if raw.instances.is_some() && raw.register.is_none() {
            return Err(
                "deregister removes every instance of the service: `instances` goes with register only"
                    .into(),
            );
        }
        found.push((
            "deregister",
            Fault::Deregister {
                nodes: selection(n)?,
                service: service()?,
            },
        ));
    }
    if raw.register.is_none() && raw.deregister.is_none() {
        if raw.service.is_some() {
            return Err("`service` goes with register or deregister".into());
        }
        if raw.instances.is_some() {
            return Err("`instances` goes with register".into());
        }
    }
    Ok(())
}

fn two(pair: &[RawNodes], what: &str) -> Result<(Nodes, Nodes), String> {
    match pair {
        [a, b] => Ok((selection(a)?, selection(b)?)),
        _ => Err(format!(
            "{what} needs exactly two groups, got {}",
            pair.len()
        )),
    }
}

fn identity(text: Option<&str>) -> Result<Identity, String> {
    match text.unwrap_or("same") {
        "same" => Ok(Identity::Same),
        "new" => Ok(Identity::New),
        other => Err(format!(
            "identity must be \"same\" or \"new\", got {other:?}"
        )),
    }
}

fn checks(scenario: Scenario, raw: &RawChecks) -> Result<Scenario, String> {
    let mut scenario = scenario;
    if let Some(d) = &raw.convergence {
        scenario = scenario.check(Check::ConvergesWithin(duration(d)?));
    }
    if let Some(d) = &raw.detection {
        scenario = scenario.check(Check::DetectsWithin(duration(d)?));
    }
    if let Some(on) = raw.false_positives {
        scenario = scenario.check(Check::NoFalsePositives(on));
    }
    Ok(scenario)
}

fn profile(name: &str) -> Result<MembershipConfig, String> {
    match name {
        "development" => Ok(MembershipConfig::development()),
        "production" => Ok(MembershipConfig::production()),
        other => Err(format!(
            "profile must be \"development\" or \"production\", got {other:?}"
        )),
    }
}

fn link(raw: &RawLink, base: LinkModel) -> Result<LinkModel, String> {
    let or =
        |text: &Option<String>, default: Duration| text.as_deref().map_or(Ok(default), duration);
    let model = LinkModel {
        latency: or(&raw.latency, base.latency)?,
        jitter: or(&raw.jitter, base.jitter)?,
        loss: raw.loss.unwrap_or(base.loss),
        duplicate: raw.duplicate.unwrap_or(base.duplicate),
        reorder: raw.reorder.unwrap_or(base.reorder),
        reorder_delay: or(&raw.reorder_delay, base.reorder_delay)?,
    };
    model.validate()?;
    Ok(model)
}

/// A node selection: `3`, `[1, 2]`, `"all"`, `"n3"`, `"0..10"`, `"0%..40%"`, or a group name.
fn selection(raw: &RawNodes) -> Result<Nodes, String> {
    match raw {
        RawNodes::One(i) => Ok(Nodes::One(*i)),
        RawNodes::List(list) => Ok(Nodes::List(list.clone())),
        RawNodes::Text(text) => selection_text(text.trim()),
    }
}

fn selection_text(text: &str) -> Result<Nodes, String> {
    if text == "all" {
        return Ok(Nodes::All);
    }
    if let Some(Ok(i)) = text.strip_prefix('n').map(str::parse) {
        return Ok(Nodes::One(i));
    }
    let Some((from, to)) = text.split_once("..") else {
        return Ok(Nodes::Named(text.to_string()));
    };
    if let (Some(a), Some(b)) = (from.strip_suffix('%'), to.strip_suffix('%')) {
        let parse = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("bad percentage in {text:?}"))
        };
        return Ok(Nodes::Share {
            from: parse(a)? / 100.0,
            to: parse(b)? / 100.0,
        });
    }
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("bad node range {text:?} (use 0..10 or 0%..40%)"))
    };
    Ok(Nodes::Range {
        start: parse(from)?,
        end: parse(to)?,
    })
}

/// A duration: `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"500us"`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (use e.g. \"250ms\", \"2s\", \"1m\")"))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "bad duration unit {other:?} in {text:?} (use us, ms, s or m)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn signed_micros(text: &str) -> Result<i64, String> {
    let (sign, rest) = match text.trim().strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.trim().trim_start_matches('+')),
    };
    Ok(sign * duration(rest)?.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
nodes = 8
duration = "20s"

[groups]
left = "0%..50%"
right = "50%..100%"

[[at]]
time = "5s"
partition = ["left", "right"]

[[at]]
time = "10s"
heal = true

[[at]]
time = "12s"
stall = "n3"
for = "1s"
"#;

    #[test]
    fn a_good_file_becomes_a_scenario() {
        let s = parse(GOOD, "demo.toml").unwrap();
        assert_eq!((s.name.as_str(), s.nodes, s.schedule.len()), ("demo", 8, 3));
        assert_eq!(
            s.schedule[2].fault,
            Fault::Stall(Nodes::One(3), Duration::from_secs(1))
        );
        // An entry's line is its `[[at]]` header.
        assert_eq!(s.schedule[1].line, Some(14));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let bad_group = GOOD.replace("[\"left\", \"right\"]", "[\"left\", \"rihgt\"]");
        let e = parse(&bad_group, "x").unwrap_err();
        assert_eq!(e.line, 10);
        assert!(e.problem.contains("rihgt"), "{e}");

        let bad_duration = GOOD.replace("\"1s\"", "\"1 fortnight\"");
        let e = parse(&bad_duration, "x").unwrap_err();
        assert_eq!(e.line, 18, "{e}");

        let two_actions = GOOD.replace("heal = true", "heal = true\ncrash = 1");
        let e = parse(&two_actions, "x").unwrap_err();
        assert!(e.problem.contains("2 actions"), "{e}");

        let syntax = GOOD.replace("duration = \"20s\"", "duration = ");
        assert_eq!(parse(&syntax, "x").unwrap_err().line, 4);

        let unknown = GOOD.replace("nodes = 8", "nodez = 8");
        let e = parse(&unknown, "x").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    const REGISTRY: &str = r#"
nodes = 6

[[at]]
time = "2s"
register = "all"
service = "billing"
instances = 2

[[at]]
time = "9s"
deregister = [1, 2]
service = "billing"
"#;

    #[test]
    fn registrations_parse_and_read_back() {
        let s = parse(REGISTRY, "r.toml").unwrap();
        assert_eq!(
            s.schedule[0].fault,
            Fault::Register {
                nodes: Nodes::All,
                service: "billing".into(),
                instances: 2
            }
        );
        assert_eq!(
            s.schedule[1].fault,
            Fault::Deregister {
                nodes: Nodes::List(vec![1, 2]),
                service: "billing".into()
            }
        );
        assert_eq!(
            s.schedule[0].fault.to_string(),
            "register 2 instance(s) of billing on all"
        );
        assert_eq!(
            s.schedule[1].fault.to_string(),
            "deregister billing on [1, 2]"
        );
        // One instance unless told otherwise.
        let one = parse(&REGISTRY.replace("instances = 2\n", ""), "r.toml").unwrap();
        assert!(matches!(
            one.schedule[0].fault,
            Fault::Register { instances: 1, .. }
        ));
    }

    #[test]
    fn registration_errors_name_the_line_and_the_problem() {
        let cases = [
            (
                REGISTRY.replace("service = \"billing\"\ninstances", "instances"),
                4,
                "register needs `service",
            ),
            (
                REGISTRY.replace("\"billing\"\ninstances", "\"bil/ling\"\ninstances"),
                4,
                "A-Z a-z 0-9",
            ),
            (
                REGISTRY.replace("instances = 2", "instances = 0"),
                4,
                "at least one instance",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "deregister = [1, 2]\ninstances = 1"),
                10,
                "goes with register only",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "crash = 1"),
                10,
                "`service` goes with register or deregister",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "deregister = 9"),
                10,
                "node 9 does not exist",
            ),
            (
                REGISTRY.replace("instances = 2", "instances = 2\ncrash = 1"),
                4,
                "2 actions",
            ),
        ];
        for (text, line, problem) in cases {
            let e = parse(&text, "r.toml").unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
    }

    #[test]
    fn a_node_that_does_not_exist_is_refused_with_its_line() {
        let e = parse(&GOOD.replace("\"n3\"", "\"n30\""), "x").unwrap_err();
        assert_eq!(e.line, 18, "{e}");
        assert!(e.problem.contains("node 30"), "{e}");
    }
}
