//! The checks of cross-cluster calls ([`super::calls`]), made at the end of a run against what
//! really happened (cuts, gateway starts and crashes, exports), not against what the gateways
//! believed:
//!
//! - `federation-call-deadline`: every call ends by its deadline (every call whose deadline
//!   falls within the run has ended), and no instance serves a call after its deadline;
//! - `federation-not-exported`: a call to a service the called cluster's export list does not
//!   name is never served and never succeeds; on a quiet path (below) it is refused with
//!   `NotExported`;
//! - `federation-calls-served`: a call to an exported service on a quiet path succeeds. A path
//!   is quiet for a call when, from `settle` before it was issued to its deadline, no cut
//!   separated the two clusters, no gateway of either started or stopped, the service's export
//!   neither appeared nor went away (and it was exported at the issue), none of the call's WAN
//!   messages was lost, the clusters are linked, and its caller stayed up. `settle` is the
//!   scenario's `calls_settle`: by default `visible_within` and two probe intervals more (a
//!   link that is not up probes every gateway of its remote each round, so after a heal one
//!   lost round costs a probe interval; two leave room for a second loss).

use std::collections::BTreeSet;

use super::calls::{CallEnd, CallRecord};
use super::wan::WanCut;

/// What really happened during a run, as the call checks need it.
#[derive(Clone, Debug, Default)]
pub struct Ground {
    /// How long links and directories take to catch up (µs).
    pub settle_us: u64,
    /// The scenario's WAN cuts.
    pub cuts: Vec<WanCut>,
    /// Linked pairs of clusters.
    pub links: Vec<(usize, usize)>,
    /// Each cluster's export list.
    pub export_lists: Vec<BTreeSet<String>>,
    /// When a gateway of a cluster started or stopped: (µs, cluster).
    pub gateway_changes: Vec<(u64, usize)>,
    /// When a service's export appeared or went away: (µs, cluster, service).
    pub export_changes: Vec<(u64, usize, String)>,
    /// Services exported now, by (cluster, service).
    pub exported_now: BTreeSet<(usize, String)>,
    /// Calls one of whose WAN messages was lost or cut.
    pub lost: BTreeSet<u64>,
}

impl Ground {
    /// Whether cluster `cluster` exports `service` now.
    pub fn exported(&self, cluster: usize, service: &str) -> bool {
        self.exported_now.contains(&(cluster, service.to_owned()))
    }

    /// Takes in whether `cluster` exports `service` at `now_us`.
    pub fn set_exported(&mut self, now_us: u64, cluster: usize, service: &str, on: bool) {
        let key = (cluster, service.to_owned());
        let changed = match on {
            true => self.exported_now.insert(key),
            false => self.exported_now.remove(&key),
        };
        if changed {
            self.export_changes
                .push((now_us, cluster, service.to_owned()));
        }
    }

    /// Whether the path of `call` (id `id`) was quiet (see the module's comment).
    pub fn quiet(&self, id: usize, call: &CallRecord) -> bool {
        let window = call.issued_us.saturating_sub(self.settle_us)..=call.deadline_us;
        let ends = [call.from, call.to];
        let cut = self.cuts.iter().any(|c| {
            let (from, to) = (c.from.as_micros() as u64, c.to.as_micros() as u64);
            from <= *window.end() && to >= *window.start() && c.separates(call.from, call.to, from)
        });
        let gateways = self
            .gateway_changes
            .iter()
            .any(|(at, c)| window.contains(at) && ends.contains(c));
        let exports = self
            .export_changes
            .iter()
            .any(|(at, c, s)| window.contains(at) && *c == call.to && *s == call.service);
        let linked = self
            .links
            .iter()
            .any(|&(a, b)| (a, b) == (call.from, call.to) || (b, a) == (call.from, call.to));
        let caller_gone = matches!(call.end, Some((_, CallEnd::CallerGone)));
        !cut && !gateways && !exports && linked && !caller_gone && !self.lost.contains(&(id as u64))
    }
}

/// One violation: when, which check, what.
pub type Found = (u64, &'static str, String);

/// Checks every call of a run that ended at `end_us`.
pub fn check(calls: &[CallRecord], ground: &Ground, names: &[String], end_us: u64) -> Vec<Found> {
    let mut found = Vec::new();
    for (id, call) in calls.iter().enumerate() {
        let what = || {
            format!(
                "call #{id} {}/n{} -> {}/{} issued at {:.3}s",
                names[call.from],
                call.caller,
                names[call.to],
                call.service,
                call.issued_us as f64 / 1e6
            )
        };
        found.extend(deadline(call, end_us, what));
        let exported = ground.export_lists[call.to].contains(&call.service);
        let quiet = ground.quiet(id, call);
        let end = call.end.map(|(_, e)| e);
        if !exported {
            if call.served_us.is_some() || end == Some(CallEnd::Ok) {
                found.push((
                    call.issued_us,
                    "federation-not-exported",
                    format!("{} was served", what()),
                ));
            } else if quiet && end.is_some() && end != Some(CallEnd::NotExported) {
                let message = format!("{} ended {:?}, not NotExported", what(), end);
                found.push((call.issued_us, "federation-not-exported", message));
            }
        } else if quiet && call.exported_at_issue && end.is_some() && end != Some(CallEnd::Ok) {
            let message = format!(
                "{} ended {:?} after {} attempt(s) on a quiet path",
                what(),
                end,
                call.attempts
            );
            found.push((call.issued_us, "federation-calls-served", message));
        }
    }
    found
}

/// `federation-call-deadline` for one call.
fn deadline(call: &CallRecord, end_us: u64, what: impl Fn() -> String) -> Option<Found> {
    const CHECK: &str = "federation-call-deadline";
    match (call.end, call.served_us) {
        (None, _) if call.deadline_us <= end_us => {
            Some((call.deadline_us, CHECK, format!("{} never ended", what())))
        }
        (Some((at, end)), _) if at > call.deadline_us => Some((
            at,
            CHECK,
            format!(
                "{} ended {end:?} {}µs after its deadline",
                what(),
                at - call.deadline_us
            ),
        )),
        (_, Some(at)) if at > call.deadline_us => Some((
            at,
            CHECK,
            format!(
                "{} served {}µs after its deadline",
                what(),
                at - call.deadline_us
            ),
        )),
        _ => None,
    }
}
