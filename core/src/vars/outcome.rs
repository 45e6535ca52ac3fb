//! Atomic commit of a coordination session's outcome.
//!
//! A session (an auction, a vote) decides several things at once: a winner, a price, a budget
//! to debit. Committing them one variable at a time could leave the winner written and the
//! budget untouched when the cluster splits between two writes. So the values one mechanism
//! decides together live in one *ledger*: a `coordinated` variable whose type is a record,
//! one field per decided value, `Int` fields for budgets (their type's minimum is the floor a
//! debit may not cross) and an `Int` field [`SESSION_FIELD`] naming the session that wrote the
//! version. An [`Outcome`] is applied to the ledger's current record and the result proposed
//! as the next version through the register every `coordinated` variable already has: one
//! Paxos instance, decided by a majority of the declared acceptors, so it lands whole or not
//! at all. A side without a majority ends with [`CasOutcome::NoMajority`]; nothing of the
//! outcome shows anywhere. (Like any Paxos proposal that reached some acceptor, it may still
//! be decided later, whole, by a proposal that carries it — never in part.)
//!
//! Once per session: sessions commit to a ledger in increasing order of their ids. The record's
//! [`SESSION_FIELD`] holds the last session committed, and an outcome is only applied on top of
//! a record whose session is lower ([`super::VarsError::SessionDecided`] when it is the same
//! session, [`super::VarsError::SessionStale`] when a later one is there). Each version is
//! proposed on top of the version before it, so along the ledger's versions the sessions
//! strictly increase and none can appear twice — a property of the values themselves, which
//! holds even on a node that caught up by jumping over versions it never learned (the
//! register forgets old decisions, so a list of decided versions could not be trusted). The
//! price: a session whose id is below one already committed can no longer commit; take ids
//! that grow with time (a coordinator's clock and a counter).
//!
//! [`CasOutcome::NoMajority`]: foundation_agents::cas::CasOutcome::NoMajority

use std::collections::BTreeMap;

use foundation_agents::variable::{VarType, VarValue};
use serde::{Deserialize, Serialize};

use super::VarsError;

/// The ledger field naming the session whose outcome wrote the current version.
pub const SESSION_FIELD: &str = "session";

/// Identity of one coordination session, unique in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

/// What one session decided, to be committed to a ledger in one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The session; a ledger takes one outcome per session.
    pub session: SessionId,
    /// Fields set to these values.
    pub writes: BTreeMap<String, VarValue>,
    /// `Int` fields lowered by these amounts (budgets).
    pub debits: BTreeMap<String, u64>,
}

/// The ledger record `outcome` turns `current` into, checked against the ledger's type: every
/// written field exists and takes its value, every debited budget stays at or above its floor,
/// and [`SESSION_FIELD`] names the session.
pub fn apply(ty: &VarType, current: &VarValue, outcome: &Outcome) -> Result<VarValue, VarsError> {
    let ordered = session_of(current).is_none_or(|last| last < outcome.session.0);
    if !ordered && !fault_on!(OutcomeIgnoresSessionOrder) {
        let why = format!(
            "session {:?} is not after the ledger's last",
            outcome.session
        );
        return Err(VarsError::Outcome(why));
    }
    let (VarType::Record(fields), VarValue::Record(values)) = (ty, current) else {
        return Err(not_a_ledger("its type is not a record"));
    };
    if !matches!(fields.get(SESSION_FIELD), Some(VarType::Int { .. })) {
        return Err(not_a_ledger("it has no Int field \"session\""));
    }
    let mut next = values.clone();
    for (field, value) in &outcome.writes {
        if field == SESSION_FIELD || !fields.contains_key(field) {
            return Err(VarsError::Outcome(format!("no writable field {field:?}")));
        }
        next.insert(field.clone(), value.clone());
    }
    for (field, amount) in &outcome.debits {
        let left = debit(fields.get(field), next.get(field), *amount).map_err(|why| {
            VarsError::Outcome(format!("debit of {amount} from {field:?}: {why}"))
        })?;
        next.insert(field.clone(), VarValue::Int(left));
    }
    let session = i64::try_from(outcome.session.0)
        .map_err(|_| VarsError::Outcome("session id past i64::MAX".into()))?;
    next.insert(SESSION_FIELD.to_owned(), VarValue::Int(session));
    let next = VarValue::Record(next);
    ty.check(&next)?;
    Ok(next)
}

/// What is left of a budget field after a debit, if it stays at or above the type's floor.
fn debit(ty: Option<&VarType>, value: Option<&VarValue>, amount: u64) -> Result<i64, String> {
    let (Some(&VarType::Int { min, .. }), Some(&VarValue::Int(held))) = (ty, value) else {
        return Err("not an Int field".into());
    };
    if fault_on!(DebitSaturatesAtFloor) {
        // The planted bug: a debit beyond the budget empties it instead of being refused.
        let a = i64::try_from(amount).unwrap_or(i64::MAX);
        return Ok(held.saturating_sub(a).max(min));
    }
    let left = i64::try_from(amount)
        .ok()
        .and_then(|a| held.checked_sub(a))
        .filter(|left| *left >= min);
    left.ok_or_else(|| format!("holds {held}, floor {min}"))
}

fn not_a_ledger(why: &str) -> VarsError {
    VarsError::Outcome(format!("not a ledger: {why}"))
}

/// The session a ledger record names, if it is a ledger record at all.
pub fn session_of(value: &VarValue) -> Option<u64> {
    match value {
        VarValue::Record(fields) => match fields.get(SESSION_FIELD) {
            Some(VarValue::Int(session)) => u64::try_from(*session).ok(),
            _ => None,
        },
        _ => None,
    }
}
