//! What a scenario does to the cluster at a given time: faults (partitions, stalls, crashes,
//! clock skew, a worse network), the operator actions around them (restart, join, leave), and
//! what the nodes' applications do (register and deregister service instances, write to
//! replicated keyspaces).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use foundation_core::node::Command;
use foundation_core::services::record::check_service_name;

use crate::agents::{AgentGroup, AgentMessages};
use crate::network::{BlockRule, LinkModel, SlotSet};
use crate::pubsub::Publishes;
use crate::rpc::Calls;
use crate::world::World;
use crate::writes::{self, Workload, WriteRequest, Writes};

/// A selection of node slots, resolved against the cluster size when the fault is applied, so
/// one scenario works at any `--nodes`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Nodes {
    /// Every slot.
    All,
    /// One slot.
    One(usize),
    /// Slots `start..end`.
    Range {
        /// First slot.
        start: usize,
        /// One past the last slot.
        end: usize,
    },
    /// These slots.
    List(Vec<usize>),
    /// Slots from `from` to `to` as fractions of the cluster size (`0.0..0.4` = the first 40 %).
    Share {
        /// Start, 0.0–1.0.
        from: f64,
        /// End, 0.0–1.0.
        to: f64,
    },
    /// A group the scenario named.
    Named(String),
}

impl Nodes {
    /// The selected slots out of `n`, in order; an error names what does not fit.
    pub fn resolve(
        &self,
        n: usize,
        groups: &BTreeMap<String, Nodes>,
    ) -> Result<Vec<usize>, String> {
        let check = |i: usize| {
            if i < n {
                Ok(i)
            } else {
                Err(format!("node {i} does not exist (the cluster has {n})"))
            }
        };
        match self {
            Nodes::All => Ok((0..n).collect()),
            Nodes::One(i) => Ok(vec![check(*i)?]),
            Nodes::Range { start, end } if start <= end => (*start..*end).map(check).collect(),
            Nodes::Range { start, end } => Err(format!("empty range {start}..{end}")),
            Nodes::List(list) => list.iter().map(|&i| check(i)).collect(),
            Nodes::Share { from, to }
                if (0.0..=1.0).contains(from) && (0.0..=1.0).contains(to) && from <= to =>
            {
                Ok((share(*from, n)..share(*to, n)).collect())
            }
            Nodes::Share { from, to } => Err(format!("share {from}..{to} is not within 0..1")),
            Nodes::Named(name) => match groups.get(name) {
                Some(Nodes::Named(_)) => Err(format!("group {name:?} refers to another group")),
                Some(nodes) => nodes.resolve(n, groups),
                None => Err(format!("unknown group {name:?}")),
            },
        }
    }

    /// The selection as a bitmap over `n` slots.
    pub fn slot_set(&self, n: usize, groups: &BTreeMap<String, Nodes>) -> Result<SlotSet, String> {
        let mut set = vec![false; n];
        for i in self.resolve(n, groups)? {
            set[i] = true;
        }
        Ok(set)
    }
}

fn share(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

impl fmt::Display for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nodes::All => write!(f, "all"),
            Nodes::One(i) => write!(f, "n{i}"),
            Nodes::Range { start, end } => write!(f, "n{start}..n{end}"),
            Nodes::List(list) => write!(f, "{list:?}"),
            Nodes::Share { from, to } => write!(f, "{:.0}%..{:.0}%", from * 100.0, to * 100.0),
            Nodes::Named(name) => write!(f, "{name}"),
        }
    }
}

/// Which identity a restarted node comes back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// The same node id with a higher generation (a process restart).
    Same,
    /// A new node id at the same address (a replaced machine or pod).
    New,
}

/// One thing a scenario does at a point in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Cuts traffic between two groups in both directions.
    Partition(Nodes, Nodes),
    /// Cuts traffic from the first group to the second only.
    PartitionOneWay(Nodes, Nodes),
    /// Removes every partition.
    Heal,
    /// The nodes stop processing for a while; what arrives meanwhile waits in their buffers and
    /// their timers fire late.
    Stall(Nodes, Duration),
    /// The nodes stop at once, without a word to anyone.
    Crash(Nodes),
    /// Every other node is told these nodes' membership ports are closed, as forged ICMP
    /// errors would: the nodes are alive, so nothing should come of it.
    ForgedPortClosed(Nodes),
    /// The nodes leave gracefully, then shut down.
    Stop(Nodes),
    /// The nodes (crashed or stopped; running ones are crashed first) start again and join
    /// through the first running node. With storage, the same identity takes up the slot's
    /// disk; a new identity is a replaced machine with an empty disk.
    Restart(Nodes, Identity),
    /// The nodes' disks are full for a while: every write is refused (needs storage).
    DiskFull(Nodes, Duration),
    /// The nodes' clocks jump by `offset` (may be negative; local time stays monotonic) and run
    /// `drift_ppm` parts per million fast (negative: slow).
    ClockSkew {
        /// Whose clock.
        nodes: Nodes,
        /// Step, in microseconds.
        offset_us: i64,
        /// Rate error, in parts per million.
        drift_ppm: i64,
    },
    /// Every link without an override behaves like this from now on.
    Network(LinkModel),
    /// Links from the first group to the second behave like this from now on.
    Link(Nodes, Nodes, LinkModel),
    /// The nodes join the cluster through the node `via`.
    Join(Nodes, usize),
    /// Each selected node sets every key of the range to a new value (unique in the run).
    Write(Writes),
    /// Each selected node deletes every key of the range.
    Delete(Writes),
    /// A seeded random stream of writes and deletes, from now for the workload's duration.
    Workload(Workload),
    /// The application on each of the nodes registers `instances` more instances of `service`
    /// (see [`crate::services`]: registered now if the node is up, and again at every start).
    Register {
        /// Whose application.
        nodes: Nodes,
        /// The service (a valid service name).
        service: String,
        /// How many instances each node adds (at least one).
        instances: u64,
    },
    /// The application on each of the nodes deregisters every instance of `service` it has.
    Deregister {
        /// Whose application.
        nodes: Nodes,
        /// The service.
        service: String,
    },
    /// A seeded stream of RPC calls, from now for its duration (see [`crate::rpc`]).
    Calls(Calls),
    /// The application on each of the nodes subscribes to `pattern` (see [`crate::pubsub`]:
    /// now if the node is up, and again at every start).
    Subscribe {
        /// Whose application.
        nodes: Nodes,
        /// The topic pattern.
        pattern: String,
    },
    /// A seeded stream of publications, from now for its duration.
    Publish(Publishes),
    /// The application on each of the nodes spawns a supervised group of agents (see
    /// [`crate::agents`]: now if the node is up, and again at every start).
    Agents(AgentGroup),
    /// A seeded stream of agent messages, from now for its duration.
    AgentMessages(AgentMessages),
}

impl Fault {
    /// Whether this fault disturbs membership, so the cluster must converge again afterwards.
    pub fn disturbs(&self) -> bool {
        !matches!(
            self,
            Fault::Partition(..)
                | Fault::PartitionOneWay(..)
                | Fault::DiskFull(..)
                | Fault::Network(_)
                | Fault::Link(..)
                | Fault::Register { .. }
                | Fault::Deregister { .. }
                | Fault::Write(_)
                | Fault::Delete(_)
                | Fault::Workload(_)
                | Fault::Calls(_)
                | Fault::Subscribe { .. }
                | Fault::Publish(_)
                | Fault::Agents(_)
                | Fault::AgentMessages(_)
        )
    }

    /// Whether this is a write to replicated keyspaces.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Fault::Write(_) | Fault::Delete(_) | Fault::Workload(_)
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition(a, b) => write!(f, "partition {a} | {b}"),
            Fault::PartitionOneWay(a, b) => write!(f, "partition {a} -> {b} (one way)"),
            Fault::Heal => write!(f, "heal all partitions"),
            Fault::Stall(nodes, d) => write!(f, "stall {nodes} for {d:?}"),
            Fault::Crash(nodes) => write!(f, "crash {nodes}"),
            Fault::ForgedPortClosed(nodes) => write!(f, "forged port unreachable for {nodes}"),
            Fault::Stop(nodes) => write!(f, "stop {nodes} (graceful leave)"),
            Fault::Restart(nodes, Identity::Same) => write!(f, "restart {nodes} (same id)"),
            Fault::Restart(nodes, Identity::New) => write!(f, "restart {nodes} (new id)"),
            Fault::DiskFull(nodes, d) => write!(f, "disk full on {nodes} for {d:?}"),
            Fault::ClockSkew {
                nodes,
                offset_us,
                drift_ppm,
            } => {
                write!(f, "clock skew {nodes}: {offset_us:+} us, {drift_ppm:+} ppm")
            }
            Fault::Network(m) => write!(f, "network: {m:?}"),
            Fault::Link(a, b, m) => write!(f, "link {a} -> {b}: {m:?}"),
            Fault::Join(nodes, via) => write!(f, "join {nodes} via n{via}"),
            Fault::Write(w) => w.describe(f, "write"),
            Fault::Delete(w) => w.describe(f, "delete"),
            Fault::Workload(w) => write!(f, "{w}"),
            Fault::Register {
                nodes,
                service,
                instances,
            } => write!(
                f,
                "register {instances} instance(s) of {service} on {nodes}"
            ),
            Fault::Deregister { nodes, service } => write!(f, "deregister {service} on {nodes}"),
            Fault::Calls(calls) => write!(f, "{calls}"),
            Fault::Subscribe { nodes, pattern } => write!(f, "subscribe {nodes} to {pattern}"),
            Fault::Publish(publishes) => write!(f, "{publishes}"),
            Fault::Agents(group) => write!(f, "{group}"),
            Fault::AgentMessages(messages) => write!(f, "{messages}"),
        }
    }
}

/// A stall's duration, for scenario code: `stall(n, millis(2000))`.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Seconds, for scenario code: `at(secs(5), ...)`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// How long a stopping node keeps running after it announced its departure, so its goodbye
/// messages go out before it shuts down.
pub const LEAVE_GRACE: Duration = Duration::from_millis(500);

impl World {
    /// Applies `fault` now. Returns the slots it touched; an error names a selection that does
    /// not fit the cluster (nothing was changed then).
    pub fn apply(
        &mut self,
        fault: &Fault,
        groups: &BTreeMap<String, Nodes>,
    ) -> Result<Vec<usize>, String> {
        let n = self.nodes().len();
        self.note(format_args!("fault {fault}"));
        match fault {
            Fault::Partition(a, b) => {
                let (a, b) = (a.slot_set(n, groups)?, b.slot_set(n, groups)?);
                self.network_mut().block(BlockRule {
                    from: a.clone(),
                    to: b.clone(),
                });
                self.network_mut().block(BlockRule { from: b, to: a });
                self.topology_changed();
                Ok(Vec::new())
            }
            Fault::PartitionOneWay(a, b) => {
                let rule = BlockRule {
                    from: a.slot_set(n, groups)?,
                    to: b.slot_set(n, groups)?,
                };
                self.network_mut().block(rule);
                self.topology_changed();
                Ok(Vec::new())
            }
            Fault::Heal => {
                self.network_mut().heal();
                self.topology_changed();
                Ok(Vec::new())
            }
            Fault::Network(model) => {
                model.validate()?;
                self.network_mut().set_default(model.clone());
                Ok(Vec::new())
            }
            Fault::Link(a, b, model) => {
                model.validate()?;
                let (a, b) = (a.slot_set(n, groups)?, b.slot_set(n, groups)?);
                self.network_mut().set_link(a, b, model.clone());
                Ok(Vec::new())
            }
            Fault::Write(w) | Fault::Delete(w) => {
                w.validate()?;
                let slots = w.nodes.resolve(n, groups)?;
                let delete = matches!(fault, Fault::Delete(_));
                for &slot in &slots {
                    for i in w.keys.clone() {
                        let request = WriteRequest {
                            keyspace: w.keyspace.clone(),
                            key: writes::key(i),
                            delete,
                            acked: w.acked.then_some(writes::ACK_DEADLINE),
                            value_size: 0,
                        };
                        self.write(slot, request);
                    }
                }
                Ok(slots)
            }
            Fault::Workload(w) => {
                w.validate()?;
                let slots = w.nodes.resolve(n, groups)?;
                self.start_workload(w.clone(), slots.clone());
                Ok(slots)
            }
            Fault::Calls(calls) => {
                calls.validate()?;
                let slots = calls.nodes.resolve(n, groups)?;
                self.start_calls(calls.clone(), slots.clone());
                Ok(slots)
            }
            Fault::Publish(publishes) => {
                publishes.validate()?;
                let slots = publishes.nodes.resolve(n, groups)?;
                self.start_publishes(publishes.clone(), slots.clone());
                Ok(slots)
            }
            Fault::Subscribe { nodes, pattern } => {
                let slots = nodes.resolve(n, groups)?;
                for &slot in &slots {
                    self.subscribe(slot, pattern)?;
                }
                Ok(slots)
            }
            Fault::Agents(group) => {
                group.validate()?;
                let slots = group.nodes.resolve(n, groups)?;
                self.declare_agents(group.clone(), slots.clone());
                Ok(slots)
            }
            Fault::AgentMessages(messages) => {
                messages.validate()?;
                let slots = messages.nodes.resolve(n, groups)?;
                self.start_agent_messages(messages.clone(), slots.clone());
                Ok(slots)
            }
            _ => self.apply_to_nodes(fault, groups),
        }
    }

    fn apply_to_nodes(
        &mut self,
        fault: &Fault,
        groups: &BTreeMap<String, Nodes>,
    ) -> Result<Vec<usize>, String> {
        let n = self.nodes().len();
        let nodes = match fault {
            Fault::Stall(nodes, _)
            | Fault::Crash(nodes)
            | Fault::ForgedPortClosed(nodes)
            | Fault::Stop(nodes)
            | Fault::Restart(nodes, _)
            | Fault::DiskFull(nodes, _) => nodes,
            Fault::ClockSkew { nodes, .. } | Fault::Join(nodes, _) => nodes,
            Fault::Register { nodes, .. } | Fault::Deregister { nodes, .. } => nodes,
            _ => return Ok(Vec::new()),
        };
        if let Fault::Join(_, via) = fault {
            if *via >= n {
                return Err(format!("join via node {via}, but the cluster has {n}"));
            }
        }
        if let Fault::Register { service, .. } | Fault::Deregister { service, .. } = fault {
            check_service_name(service).map_err(|e| e.to_string())?;
        }
        let slots = nodes.resolve(n, groups)?;
        for &slot in &slots {
            self.apply_to_node(fault, slot);
        }
        Ok(slots)
    }

    fn apply_to_node(&mut self, fault: &Fault, slot: usize) {
        match fault {
            Fault::Stall(_, d) => self.stall(slot, d.as_micros() as u64),
            Fault::Crash(_) => self.crash(slot),
            Fault::ForgedPortClosed(_) => self.forge_port_closed(slot),
            Fault::Stop(_) => self.stop(slot),
            Fault::Restart(_, identity) => self.restart(slot, *identity),
            Fault::DiskFull(_, d) => self.fill_disk(slot, d.as_micros() as u64),
            Fault::ClockSkew {
                offset_us,
                drift_ppm,
                ..
            } => self.skew(slot, *offset_us, *drift_ppm),
            Fault::Join(_, via) => {
                let seed = self.node_addr(*via);
                self.command_after(slot, 0, Command::Join(seed));
                self.keep_joining_while_alone(slot);
            }
            Fault::Register {
                service, instances, ..
            } => {
                self.register(slot, service, *instances);
            }
            Fault::Deregister { service, .. } => {
                self.deregister(slot, service);
            }
            _ => {}
        }
    }

    fn stop(&mut self, slot: usize) {
        if self.node(slot).is_up() {
            self.command_after(slot, 0, Command::Leave);
            self.shutdown_after(slot, LEAVE_GRACE.as_micros() as u64);
        }
    }

    fn restart(&mut self, slot: usize, identity: Identity) {
        let previous = self.node(slot).generation();
        if self.node(slot).is_up() {
            self.crash(slot);
        }
        let generation = match identity {
            Identity::Same => previous + 1 + self.random_below(16),
            Identity::New => {
                self.new_identity(slot);
                1 + self.random_below(1 << 20)
            }
        };
        self.start(slot, generation);
        self.join_at_start(slot);
        self.register_at_start(slot);
        self.subscribe_at_start(slot);
        self.spawn_agents_at_start(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_resolve_against_the_cluster_size_and_refuse_what_does_not_exist() {
        let groups =
            BTreeMap::from([("minority".to_string(), Nodes::Share { from: 0.0, to: 0.4 })]);
        assert_eq!(
            Nodes::Named("minority".into())
                .resolve(10, &groups)
                .unwrap(),
            vec![0, 1, 2, 3]
        );
        assert!(Nodes::One(10).resolve(10, &groups).is_err());
        assert!(Nodes::Named("nope".into()).resolve(10, &groups).is_err());
        assert_eq!(
            Nodes::Range { start: 2, end: 4 }
                .resolve(10, &groups)
                .unwrap(),
            vec![2, 3]
        );
    }
}
