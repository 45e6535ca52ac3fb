//! The agents' invariants, checked when a scenario spawns agents ([`crate::agents`]):
//!
//! - [`AgentsVanish`] (`agents-vanish`): once a node life has ended (a crash, a stop, a
//!   restart), no live node's agent directory lists any of that life's agents after the
//!   failure-detection bound ([`Bounds::detection`]) plus [`DELIVERY_SLACK`] — counted, for a
//!   node that was stalled meanwhile, from the end of its stall, and for a node cut off from the
//!   dead one, from when it is in reach again (as [`super::membership::Detection`] counts) —
//!   and never again after that.
//! - [`AgentRequests`] (`agent-requests`): a message (send or request) is answered at most once,
//!   and ends no later than its deadline on its sender's clock (unless the sender was stalled
//!   meanwhile: a stopped process ends nothing on time); one whose sender still runs has ended
//!   once its deadline has passed.
//! - [`SupervisorIntensity`] (`supervisor-intensity`): a supervisor never restarts more than its
//!   intensity allows: at the failure that makes more than `max_restarts` within its period it
//!   gives up — at that failure, not before — starts nothing afterwards, and its node's
//!   directory never shows the group's agents in another state than `failed` from then on.
//!
//! Measured: message outcomes, restarts, give-ups, and how long after a death its agents were
//! gone from every live directory.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::agents::directory::AgentDirectory;
use foundation_core::agents::AgentState;
use foundation_core::NodeId;

use super::reach::Sides;
use super::registry::DELIVERY_SLACK;
use super::{stalled_during, Bounds, Check, Invariant, Measurements};
use crate::agents::MessageRecord;
use crate::world::World;

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// A node life that ended, as the directory keys its agents.
struct Death {
    slot: usize,
    node: NodeId,
    generation: u64,
    at_us: u64,
    /// When no live node listed its agents any more (reset if one lists them again).
    gone_us: Option<u64>,
}

/// The `agents-vanish` invariant; see the module documentation.
pub struct AgentsVanish {
    bound_us: u64,
    /// The life each slot runs, as last seen: (life, node id, generation).
    seen: Vec<Option<(u64, NodeId, u64)>>,
    deaths: Vec<Death>,
    /// Death → gone from every live directory, in seconds.
    took: Vec<f64>,
    sides: Sides,
}

impl AgentsVanish {
    /// With the run's detection bound.
    pub fn new(bounds: &Bounds) -> Self {
        Self {
            bound_us: micros(bounds.detection + DELIVERY_SLACK),
            seen: Vec::new(),
            deaths: Vec::new(),
            took: Vec::new(),
            sides: Sides::default(),
        }
    }

    /// Notes lives that ended since the last look (a renewed generation is not a death:
    /// membership converges on it, it is not detected).
    fn track(&mut self, world: &World) {
        self.seen.resize(world.nodes().len(), None);
        for (slot, node) in world.nodes().iter().enumerate() {
            let now = node
                .is_up()
                .then(|| (node.life(), node.id(), node.generation()));
            let before = self.seen[slot];
            if let Some((life, id, generation)) = before {
                if now.is_none_or(|(l, ..)| l != life) {
                    self.deaths.push(Death {
                        slot,
                        node: id,
                        generation,
                        at_us: node.life_ended_us(life).unwrap_or(world.now_us()),
                        gone_us: None,
                    });
                }
            }
            self.seen[slot] = now;
        }
    }

    /// The first agent of `death` that `observer` lists.
    fn listed(directory: &AgentDirectory, death: &Death) -> Option<String> {
        directory
            .on_node(death.node)
            .into_iter()
            .find(|e| e.generation == death.generation)
            .map(|e| e.name.clone())
    }
}

impl Invariant for AgentsVanish {
    fn name(&self) -> &'static str {
        "agents-vanish"
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.track(world);
        if self.deaths.is_empty() {
            return Ok(());
        }
        let now = world.now_us();
        let mut listing = vec![false; self.deaths.len()];
        let mut late = None;
        let sides = &mut self.sides;
        for (slot, node) in world.nodes().iter().enumerate() {
            let Some(core) = node.core() else { continue };
            if node.leaving_us().is_some() {
                continue;
            }
            let directory = AgentDirectory::build(core);
            let stall_end = node.stalls().last().map_or(0, |s| s.1);
            for (i, death) in self.deaths.iter().enumerate() {
                let Some(agent) = Self::listed(&directory, death) else {
                    continue;
                };
                listing[i] = true;
                let overdue = |from_us: u64| now > from_us.max(stall_end) + self.bound_us;
                if late.is_none()
                    && overdue(death.at_us)
                    && sides
                        .reachable_since(world, slot, death.slot, death.at_us)
                        .is_some_and(overdue)
                {
                    late = Some(format!(
                        "n{slot} lists agent {agent} of n{}'s ended life (gen {}) {:.2} s after it ended (bound {:.1} s)",
                        death.slot,
                        death.generation,
                        (now - death.at_us) as f64 / 1e6,
                        self.bound_us as f64 / 1e6
                    ));
                }
            }
        }
        for (death, listed) in self.deaths.iter_mut().zip(listing) {
            match (listed, death.gone_us) {
                (true, _) => death.gone_us = None,
                (false, None) => death.gone_us = Some(now),
                (false, Some(_)) => {}
            }
        }
        late.map_or(Ok(()), Err)
    }

    fn at_end(&mut self, _world: &World) -> Check {
        self.took = self
            .deaths
            .iter()
            .filter_map(|d| d.gone_us.map(|g| (g - d.at_us) as f64 / 1e6))
            .collect();
        Ok(())
    }

    fn measure(&self, out: &mut Measurements) {
        out.agents_vanished.extend(self.took.iter().copied());
    }
}

/// When a message still open must have ended: its deadline plus [`DELIVERY_SLACK`], or that
/// long after the end of a stall of its sender in between. A stalled process ends nothing on
/// time (a request's deadline timer fires when it resumes), which the judgment of a message
/// that ended late excuses too; without this, a sender stalled across a deadline was reported
/// as never ending its message (`--scenario chaos --nodes 16 --seed 5`).
fn end_due_us(world: &World, m: &MessageRecord) -> u64 {
    let slack = micros(DELIVERY_SLACK);
    let stalls = world.node(m.slot).stalls();
    stalls.iter().fold(m.until_us + slack, |due, &(from, to)| {
        if from <= due && to >= m.started_us {
            due.max(to + slack)
        } else {
            due
        }
    })
}

/// The `agent-requests` invariant; see the module documentation.
#[derive(Default)]
pub struct AgentRequests {
    /// Messages already judged (every one before this index has ended or died).
    judged: usize,
    outcomes: BTreeMap<&'static str, u64>,
}

impl AgentRequests {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }

    fn judge(&mut self, world: &World, id: usize) -> Check {
        let m = &world.agent_messages()[id];
        if m.answers > 1 {
            return Err(format!(
                "message #{id} from n{} to {} was answered {} times",
                m.slot, m.agent, m.answers
            ));
        }
        let sender_runs = world.node(m.slot).is_up_in(m.life);
        let Some(outcome) = m.outcome else {
            if sender_runs && world.now_us() > end_due_us(world, m) {
                return Err(format!(
                    "message #{id} from n{} to {} never ended, {:.2} s past its deadline",
                    m.slot,
                    m.agent,
                    (world.now_us() - m.until_us) as f64 / 1e6
                ));
            }
            return Ok(()); // its sender died with it
        };
        *self.outcomes.entry(outcome).or_default() += 1;
        let ended = m.ended_local.unwrap_or(m.until_local);
        let ended_us = m.ended_us.unwrap_or(m.started_us);
        let stalled = stalled_during(world, m.slot, m.started_us, ended_us);
        // Late on the sender's clock and in world time both: a clock stepped forward while the
        // message waited shows its deadline passed at once, and the request ends on time in
        // world time but "late" by the step on the clock (`--scenario chaos --nodes 16
        // --seed 4`: a 1.04 s step, 571 ms "late").
        let late = ended > m.until_local && ended_us > m.until_us;
        if late && !stalled {
            return Err(format!(
                "message #{id} from n{} to {} ended {outcome} {:?} past its deadline",
                m.slot,
                m.agent,
                ended.saturating_since(m.until_local)
            ));
        }
        Ok(())
    }

    /// Judges every message from the first not judged, stopping at one still waiting (all of
    /// them at the end).
    fn judge_ended(&mut self, world: &World, all: bool) -> Check {
        let messages = world.agent_messages();
        while self.judged < messages.len() {
            let m = &messages[self.judged];
            let waiting = m.outcome.is_none()
                && world.node(m.slot).is_up_in(m.life)
                && world.now_us() <= end_due_us(world, m);
            if waiting && !all {
                return Ok(());
            }
            let id = self.judged;
            self.judged += 1;
            self.judge(world, id)?;
        }
        Ok(())
    }
}

impl Invariant for AgentRequests {
    fn name(&self) -> &'static str {
        "agent-requests"
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.judge_ended(world, false)
    }

    fn at_end(&mut self, world: &World) -> Check {
        // A message whose deadline is past the end of the run is not judged for ending.
        let end = world.now_us();
        let messages = world.agent_messages();
        while self.judged < messages.len() {
            let m = &messages[self.judged];
            if m.outcome.is_none() && end_due_us(world, m) >= end {
                self.judged += 1;
                continue;
            }
            let id = self.judged;
            self.judged += 1;
            self.judge(world, id)?;
        }
        Ok(())
    }

    fn measure(&self, out: &mut Measurements) {
        for (outcome, n) in &self.outcomes {
            *out.agent_messages.entry((*outcome).to_owned()).or_default() += n;
        }
    }
}

/// The `supervisor-intensity` invariant; see the module documentation.
#[derive(Default)]
pub struct SupervisorIntensity {
    /// Per supervision record: failures already judged.
    judged: Vec<usize>,
    restarts: u64,
    gave_up: u64,
}

impl SupervisorIntensity {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How long after giving up its node's directory may still show the group's agents otherwise.
const SHOWN_WITHIN: Duration = Duration::from_millis(500);

impl Invariant for SupervisorIntensity {
    fn name(&self) -> &'static str {
        "supervisor-intensity"
    }

    fn on_tick(&mut self, world: &World) -> Check {
        let records = world.supervision();
        self.judged.resize(records.len(), 0);
        for (r, record) in records.iter().enumerate() {
            let failures = &record.failures;
            while self.judged[r] < failures.len() {
                let i = self.judged[r];
                self.judged[r] += 1;
                let at = failures[i];
                let within = failures[..=i]
                    .iter()
                    .filter(|&&f| at - f < record.period_ms)
                    .count();
                let one_too_many = within > record.max_restarts as usize;
                let gave_up_here = record.gave_up.as_ref().is_some_and(|(t, _)| *t == at)
                    && i + 1 == failures.len();
                if one_too_many && !gave_up_here {
                    return Err(format!(
                        "n{} group {}: {within} failures within {} ms at {at} ms, more than the {} restarts allowed, and its supervisor did not give up",
                        record.slot, record.group, record.period_ms, record.max_restarts
                    ));
                }
                if gave_up_here && !one_too_many {
                    return Err(format!(
                        "n{} group {} gave up at {at} ms after only {within} failures within {} ms (it allows {})",
                        record.slot, record.group, record.period_ms, record.max_restarts
                    ));
                }
            }
            if record.started_after_giving_up > 0 {
                return Err(format!(
                    "n{} group {} started {} agents after giving up",
                    record.slot, record.group, record.started_after_giving_up
                ));
            }
            let Some(at_us) = record.gave_up_us else {
                continue;
            };
            let node = world.node(record.slot);
            let stall_end = node.stalls().last().map_or(0, |s| s.1);
            let due = at_us.max(stall_end) + micros(SHOWN_WITHIN);
            if !node.is_up_in(record.life) || world.now_us() < due {
                continue;
            }
            if let Some(core) = node.core() {
                let directory = AgentDirectory::build(core);
                for agent in &record.agents {
                    let shown = directory
                        .named(agent)
                        .find(|e| e.local)
                        .map(|e| e.record.state);
                    // Absent for a moment is allowed: after a generation renewal the core
                    // writes its entries again under the new life.
                    if shown.is_some_and(|s| s != AgentState::Failed) {
                        return Err(format!(
                            "n{} group {} gave up, but its directory shows {agent} as {shown:?}",
                            record.slot, record.group
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn at_end(&mut self, world: &World) -> Check {
        let result = self.on_tick(world);
        self.restarts = world
            .supervision()
            .iter()
            .map(|r| r.restarts.len() as u64)
            .sum();
        self.gave_up = world
            .supervision()
            .iter()
            .filter(|r| r.gave_up.is_some())
            .count() as u64;
        result
    }

    fn measure(&self, out: &mut Measurements) {
        out.agent_restarts += self.restarts;
        out.agent_give_ups += self.gave_up;
    }
}
