//! RPC's invariant, `rpc-calls`, over every call a [`Calls`](crate::rpc::Calls) load made.
//!
//! - **Calls end by their deadline.** A call that ended did so no later than its deadline on
//!   the caller's clock, whatever the network did (a call whose node died is not judged, nor
//!   one whose caller was stalled meanwhile: a stopped process ends nothing on time).
//! - **At most once unless idempotent.** A handler ran at most once for a call that was not
//!   marked idempotent: the router never retries it after an end where its handler may have
//!   run.
//! - **An answer was handled.** A call that ended `ok` had a handler run for it.
//! - **Calls reach a handler on a quiet cluster.** A call started once the registry's settle
//!   bound (every live node lists exactly the live instances) has passed since the last
//!   disturbance, with no partition in force, ends `ok` or fails only after a handler ran for
//!   it (a slow handler outlasting the deadline): routing finds a live instance once the
//!   directory is right. Not for services whose handlers are slow by design
//!   ([`is_slow`]): their timeouts trip the breakers, which then turn calls away, as they
//!   should.
//!
//! Measured: calls made, ended ok, ended with each error, and the most attempts one took.

use std::collections::BTreeMap;

use super::registry::RegistryConsistent;
use super::{stalled_during, Bounds, Check, Invariant, Measurements};
use crate::faults::Fault;
use crate::rpc::is_slow;
use crate::world::World;

/// The `rpc-calls` invariant.
pub struct CallsEnd {
    /// Calls already judged (every call before this index has ended or died).
    judged: usize,
    /// From when a started call must succeed; `None` while a partition is in force.
    quiet_from_us: Option<u64>,
    settle_us: u64,
    outcomes: BTreeMap<&'static str, u64>,
}

impl CallsEnd {
    /// With the simulator's default registry bounds.
    pub fn new(bounds: &Bounds) -> Self {
        let (_, settle) = RegistryConsistent::for_simulator(bounds).bounds();
        Self {
            judged: 0,
            quiet_from_us: Some(0),
            settle_us: settle.as_micros() as u64,
            outcomes: BTreeMap::new(),
        }
    }

    /// Outcomes counted so far, by name (`ok`, `unavailable`, …).
    pub fn outcomes(&self) -> &BTreeMap<&'static str, u64> {
        &self.outcomes
    }

    fn judge(&mut self, world: &World, id: usize) -> Check {
        let call = &world.calls()[id];
        let Some(outcome) = call.outcome else {
            return Ok(()); // its node died with it
        };
        *self.outcomes.entry(outcome).or_default() += 1;
        let ended = call.ended_local.unwrap_or(call.until_local);
        let ended_us = call.ended_us.unwrap_or(call.started_us);
        let stalled = stalled_during(world, call.slot, call.started_us, ended_us);
        if ended > call.until_local && !stalled {
            return Err(format!(
                "call #{id} from n{} ended {:?} past its deadline",
                call.slot,
                ended.saturating_since(call.until_local)
            ));
        }
        if !call.idempotent && call.executions > 1 {
            return Err(format!(
                "call #{id} from n{} is not idempotent but its handler ran {} times",
                call.slot, call.executions
            ));
        }
        if outcome == "ok" && call.executions == 0 {
            return Err(format!("call #{id} ended ok but no handler ran for it"));
        }
        let quiet = self
            .quiet_from_us
            .is_some_and(|from| call.started_us >= from + self.settle_us);
        if quiet && outcome != "ok" && call.executions == 0 && !is_slow(&call.service) {
            return Err(format!(
                "call #{id} from n{} to {} started on a quiet cluster ({:.1} s) and ended {outcome} after {} attempt(s), no handler reached",
                call.slot,
                call.service,
                call.started_us as f64 / 1e6,
                call.attempts
            ));
        }
        Ok(())
    }

    /// Judges every call from the first not judged, stopping at one still running.
    fn judge_ended(&mut self, world: &World, all: bool) -> Check {
        let calls = world.calls();
        while self.judged < calls.len() {
            let call = &calls[self.judged];
            let running = call.outcome.is_none() && world.node(call.slot).life() == call.life;
            if running && !all {
                return Ok(());
            }
            let id = self.judged;
            self.judged += 1;
            self.judge(world, id)?;
        }
        Ok(())
    }
}

impl Invariant for CallsEnd {
    fn name(&self) -> &'static str {
        "rpc-calls"
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, _slots: &[usize]) {
        let now = world.now_us();
        match fault {
            Fault::Heal => self.quiet_from_us = Some(now),
            Fault::Partition(..) | Fault::PartitionOneWay(..) => self.quiet_from_us = None,
            Fault::Calls(_) | Fault::Register { .. } => {}
            _ => {
                if let Some(from) = &mut self.quiet_from_us {
                    *from = now;
                }
            }
        }
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.judge_ended(world, false)
    }

    fn at_end(&mut self, world: &World) -> Check {
        self.judge_ended(world, true)
    }

    fn measure(&self, out: &mut Measurements) {
        for (outcome, n) in &self.outcomes {
            *out.calls.entry((*outcome).to_owned()).or_default() += n;
        }
    }
}
