//! What must hold of coordination sessions run by [`crate::sessions::Sessions`], checked from
//! its [`SessionRecord`]s and from the versions of each ledger as the nodes learned them
//! ([`Ledger`]: every node that learns a version learns the same value).
//!
//! - [`one_outcome_per_session`]: along a ledger's versions the sessions strictly increase
//!   (none wrote twice: not an outcome and an abort, not an outcome twice), and a version a
//!   coordinator reports as its commit, or a settle as its abort, names that session.
//! - [`within_budget`]: a committed auction (one item, one winner) pays a price no larger
//!   than the budget it found, and the budget is lowered by exactly that price.
//! - [`matches_machine`]: a committed outcome is what the same `foundation_agents` machine
//!   decides on one node when fed the answers the coordinator acknowledged, at the times it
//!   took them (so answers it refused — replays, wrong kinds, late ones — changed nothing).
//! - [`silence_is_not_convergence`]: a tatonnement (its prices are reported, not committed)
//!   claims convergence only for a round every participant answered.
//! - [`no_minority_commit`]: no coordinator reports its outcome committed while it is cut off
//!   on the minority side of a partition.
//!
//! Each is shown failing by a fault switch in `tests/sessions_driven.rs` (`can_fail`).

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::auction::sealed::{SealedBidAuction, SealedConfig};
use foundation_agents::market::tatonnement::TatonnementOutcome;
use foundation_agents::variable::VarValue;
use foundation_agents::voting::{Election, ElectionConfig};
use foundation_agents::{AgentId, Time};
use foundation_core::agents::sessions::{Answer, Ask, CommitState, Decision, Mechanism, Settled};
use foundation_core::vars::{outcome, VarsEvent};

use super::Check;
use crate::sessions::SessionRecord;

/// One ledger's versions, as the nodes learned them.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// The ledger variable.
    pub name: String,
    /// Its initial record (version 0).
    pub initial: VarValue,
    /// Version → value.
    pub versions: BTreeMap<u64, VarValue>,
}

impl Ledger {
    /// An empty history of ledger `name`, starting at `initial`.
    pub fn new(name: &str, initial: VarValue) -> Self {
        Self {
            name: name.to_owned(),
            initial,
            versions: BTreeMap::new(),
        }
    }

    /// Takes a version node `slot` learned; every node must learn the same value for it.
    pub fn learn(&mut self, slot: usize, event: &VarsEvent) -> Check {
        let VarsEvent::Changed {
            name,
            version,
            value,
            ..
        } = event
        else {
            return Ok(());
        };
        if *name != self.name {
            return Ok(());
        }
        let seen = self
            .versions
            .entry(*version)
            .or_insert_with(|| value.clone());
        if seen != value {
            return Err(format!(
                "{} version {version}: n{slot} learned {value:?}, another {seen:?}",
                self.name
            ));
        }
        Ok(())
    }

    /// The value before `version`, if known.
    fn before(&self, version: u64) -> Option<&VarValue> {
        match version {
            0 => None,
            1 => Some(&self.initial),
            v => self.versions.get(&(v - 1)),
        }
    }

    fn session_at(&self, version: u64) -> Option<u64> {
        self.versions.get(&version).and_then(outcome::session_of)
    }
}

fn ledger_of(record: &SessionRecord) -> Option<&str> {
    record.plan.commit.as_ref().map(|c| c.ledger.as_str())
}

fn int(value: &VarValue, field: &str) -> Option<i64> {
    match value {
        VarValue::Record(fields) => match fields.get(field) {
            Some(VarValue::Int(i)) => Some(*i),
            _ => None,
        },
        _ => None,
    }
}

fn field<'a>(value: &'a VarValue, field: &str) -> Option<&'a VarValue> {
    match value {
        VarValue::Record(fields) => fields.get(field),
        _ => None,
    }
}

/// The committed sessions of `ledger`: (record, version).
fn committed<'a>(
    ledger: &'a Ledger,
    records: &'a [SessionRecord],
) -> impl Iterator<Item = (&'a SessionRecord, u64)> {
    records.iter().filter_map(move |r| match r.commit {
        Some((CommitState::Committed { version }, _))
            if ledger_of(r) == Some(ledger.name.as_str()) =>
        {
            Some((r, version))
        }
        _ => None,
    })
}

/// One outcome per session: sessions strictly increase along the versions, and every version
/// reported as a session's commit or abort names it.
pub fn one_outcome_per_session(ledger: &Ledger, records: &[SessionRecord]) -> Check {
    let mut last: Option<(u64, u64)> = None;
    for (&v, value) in &ledger.versions {
        let session = outcome::session_of(value).ok_or("not a ledger record")?;
        if let Some((lv, ls)) = last.filter(|(_, ls)| session <= *ls) {
            return Err(format!(
                "{} version {v} names session {session}, after version {lv} named {ls}",
                ledger.name
            ));
        }
        last = Some((v, session));
    }
    for r in records
        .iter()
        .filter(|r| ledger_of(r) == Some(&ledger.name))
    {
        let id = r.plan.id.0;
        let commit = match r.commit {
            Some((CommitState::Committed { version }, _)) => Some(version),
            _ => None,
        };
        let aborts = r.settles.iter().filter_map(|(_, s, _)| match s {
            Settled::Aborted { version } => Some(*version),
            _ => None,
        });
        for version in commit.into_iter().chain(aborts) {
            if let Some(named) = ledger.session_at(version).filter(|s| *s != id) {
                return Err(format!(
                    "session {id} reported {} version {version}, which names session {named}",
                    ledger.name
                ));
            }
        }
    }
    Ok(())
}

/// A committed auction pays at most the budget it found, and lowers it by exactly its price.
pub fn within_budget(ledger: &Ledger, records: &[SessionRecord], budget: &str) -> Check {
    for (r, version) in committed(ledger, records) {
        let Some(Decision::Auction(auction)) = r.drove.as_ref().map(|d| &d.decision) else {
            continue;
        };
        let Some(award) = &auction.award else {
            continue;
        };
        let price = i64::try_from(award.price.minor()).unwrap_or(i64::MAX);
        let found = ledger.before(version).and_then(|b| int(b, budget));
        let left = ledger.versions.get(&version).and_then(|v| int(v, budget));
        let (Some(found), Some(left)) = (found, left) else {
            continue; // A version nobody reported; the order check still holds.
        };
        if price > found || found - left != price {
            return Err(format!(
                "session {} paid {price} from a budget of {found}, which went to {left}",
                r.plan.id.0
            ));
        }
    }
    Ok(())
}

/// A committed outcome is the one the same machine decides on one node for the acknowledged
/// answers: the winner (and price) of a sealed-bid auction, the label elected by a vote.
pub fn matches_machine(
    ledger: &Ledger,
    records: &[SessionRecord],
    winner: &str,
    price: Option<&str>,
) -> Check {
    for (r, version) in committed(ledger, records) {
        let Some(value) = ledger.versions.get(&version) else {
            continue;
        };
        let Some(expected) = replay(r) else {
            continue; // A mechanism this check does not replay.
        };
        let written = field(value, winner);
        let (name, paid) = match &expected {
            Replayed::Sold { winner, price } => (Some(winner.as_str()), Some(*price)),
            Replayed::Elected(label) => (Some(label.as_str()), None),
            Replayed::Nothing => (None, None),
        };
        let winner_ok = written == name.map(|n| VarValue::Choice(n.to_owned())).as_ref();
        let price_ok = match (price, paid) {
            (Some(f), Some(p)) => int(value, f) == i64::try_from(p).ok(),
            _ => true,
        };
        if !winner_ok || !price_ok {
            return Err(format!(
                "session {} committed {value:?}; the machine on one node decides {expected:?} \
                 for the {} answers acknowledged",
                r.plan.id.0,
                r.drove.as_ref().map_or(0, |d| d.acknowledged.len())
            ));
        }
    }
    Ok(())
}

/// What the machine decided on one node.
#[derive(Debug)]
enum Replayed {
    Sold { winner: String, price: u64 },
    Elected(String),
    Nothing,
}

/// The session's mechanism, opened as the session opened it and fed the acknowledged answers.
/// Built here from the `foundation_agents` machines directly, not through the core's
/// `mechanic`, so that a bug in how the driver opens or feeds them shows as a difference.
fn replay(r: &SessionRecord) -> Option<Replayed> {
    let drove = r.drove.as_ref()?;
    let within = r.plan.answer_within.as_millis() as u64;
    let ids = (0..r.participants.len() as u64).map(AgentId);
    let name = |agent: AgentId| r.participants.get(agent.0 as usize).cloned();
    match &r.plan.mechanism {
        Mechanism::SealedBid {
            item,
            pricing,
            reserve,
        } => {
            let config = SealedConfig::new(item.clone(), *pricing)
                .reserve(*reserve)
                .deadline(Time(within))
                .participants(ids);
            let mut machine = SealedBidAuction::new(config, Time(0)).ok()?;
            for acked in &drove.acknowledged {
                if let Answer::Bid(amount) = acked.answer {
                    let _ = machine.submit(acked.at, AgentId(acked.agent as u64), amount);
                }
            }
            let decided = machine.close(Time(within));
            Some(match decided.award {
                Some(award) => Replayed::Sold {
                    winner: name(award.winner)?,
                    price: award.price.minor(),
                },
                None => Replayed::Nothing,
            })
        }
        Mechanism::Vote {
            question,
            candidates,
            method,
            quorum,
        } => {
            let config = ElectionConfig {
                question: question.clone(),
                candidates: candidates.clone(),
                voters: ids.map(|id| (id, 1.0)).collect(),
                method: *method,
                quorum: *quorum,
                deadline: Time(within),
            };
            let mut machine = Election::new(config, Time(0)).ok()?;
            for acked in &drove.acknowledged {
                if let Answer::Ballot(ballot) = &acked.answer {
                    let voter = AgentId(acked.agent as u64);
                    let _ = machine.cast(acked.at, voter, ballot.clone());
                }
            }
            Some(match machine.handle_timeout(Time(within)) {
                Some(Ok(vote)) => Replayed::Elected(vote.label),
                _ => Replayed::Nothing,
            })
        }
        _ => None,
    }
}

/// A window of a partition: from, to (world µs), and the slots on its minority side.
pub type Minority = (u64, u64, BTreeSet<usize>);

/// No coordinator reports its outcome committed while on a partition's minority side.
pub fn no_minority_commit(records: &[SessionRecord], minority: &[Minority]) -> Check {
    for r in records {
        let Some((CommitState::Committed { version }, at)) = &r.commit else {
            continue;
        };
        let cut = minority
            .iter()
            .any(|(from, to, side)| (*from..*to).contains(at) && side.contains(&r.coordinator));
        if cut {
            return Err(format!(
                "n{} reported session {} committed (version {version}) at {:.3}s, cut off on \
                 the minority side",
                r.coordinator,
                r.plan.id.0,
                *at as f64 / 1e6
            ));
        }
    }
    Ok(())
}

/// A tatonnement claims convergence only for a round every participant answered: silence is
/// not agreement (nor zero excess demand).
pub fn silence_is_not_convergence(records: &[SessionRecord]) -> Check {
    for r in records {
        let Some(drove) = &r.drove else {
            continue;
        };
        let Decision::Tatonnement(TatonnementOutcome::Converged { rounds, .. }) = &drove.decision
        else {
            continue;
        };
        let excess_in = |acked: &&foundation_core::agents::sessions::Acked| match acked.asked {
            Ask::Prices { round, .. } if matches!(acked.answer, Answer::Excess(_)) => Some(round),
            _ => None,
        };
        let last = drove
            .acknowledged
            .iter()
            .filter_map(|a| excess_in(&a))
            .max();
        let answered: BTreeSet<usize> = drove
            .acknowledged
            .iter()
            .filter(|a| last.is_some() && excess_in(a) == last)
            .map(|a| a.agent)
            .collect();
        if answered.len() < r.participants.len() {
            return Err(format!(
                "session {} converged after {rounds} rounds with {} of {} participants \
                 answering its last round ({last:?})",
                r.plan.id.0,
                answered.len(),
                r.participants.len()
            ));
        }
    }
    Ok(())
}
