//! Allowances and reclaiming: how the rights a dead node life held in a counter come back to
//! the pool without a unit ever being spent twice.
//!
//! # The problem
//!
//! A life spends its rights without asking anyone ([`counter`](super::counter)), and its state
//! reaches the others some milliseconds later. When a life is declared dead, nobody knows what
//! it spent last: a crash may have lost its last draws before they were written, and a life
//! that is only cut off by a partition keeps drawing on its side. Handing its rights to
//! someone else on what the survivors *see* would let both spend them.
//!
//! # The rule
//!
//! 1. **Allowance.** A life may give up rights (draw them, or hand them over) only up to a
//!    *ceiling* on its total given up, which a majority of the counter's holders (the spec's
//!    acceptors, fixed at declaration, as for `cas`) has allowed. It asks for a higher ceiling
//!    ahead of need ([`Step::Raise`]; each holder records the highest it allowed that life and
//!    answers [`Step::Allowed`]), so draws rarely wait; a draw beyond the allowance is
//!    refused with [`VarsError::Allowance`](super::VarsError::Allowance) and succeeds once the
//!    raise is allowed. At declaration every genesis holder is allowed half its share.
//! 2. **Fence.** When membership reports a life dead (or a later life of its node up: a node
//!    restarted quicker than failure detection is never reported down), the holder lowest in
//!    order that sees it dead becomes its would-be *heir* and asks every holder to fence it
//!    ([`Step::Fence`]).
//!    A holder that also sees it dead records the first heir it is asked for — for ever — and
//!    answers with that heir and the highest ceiling it allowed the dead life
//!    ([`Step::Fenced`]). A fenced life is never allowed more.
//! 3. **Reclaim.** Once a majority names it heir, the heir takes the highest ceiling `C` among
//!    those answers and hands itself `received - C` of the dead life's rights, where `received`
//!    is what the dead life was given (added and handed to it) as far as the heir knows — once.
//!
//! # Why no unit is spent twice
//!
//! Any ceiling a life used was allowed by a majority, and any fence was answered by a
//! majority: the two share a holder. If it allowed the ceiling before it was fenced, it
//! reported at least that ceiling to the heir; if it was fenced first, it refused the raise,
//! which then had no majority. So `C` is at least every ceiling the dead life ever used, and
//! none is allowed after the fence: the dead life gives up at most `C` in total, ever — whether
//! it crashed or is alive behind a partition. The heir takes only what was given to it beyond
//! `C`, so the dead life's balance never goes below zero in any merge of the states (which is
//! also why a merged state never shows it overdrawn), and every holder records one heir, so a
//! second heir never gets a majority. The heir writes its take as a hand-over out of the dead
//! life's account — totals merge by maximum, so should the dead life itself have handed the
//! heir more, the larger of the two stands and rights are lost, never doubled.
//!
//! # What it costs, and what is not built
//!
//! A life keeps up to about half of its rights allowed ahead: at most that much is lost when
//! it dies. A life fenced while alive (a partition long enough for the majority to declare it
//! failed) keeps what it was allowed and no more: rights handed to it later cannot be spent
//! by that life (a restarted node is a new life and takes part again). A counter declared
//! without holders (no initial units) has no majority to ask: its lives spend without
//! allowances and their rights are not reclaimed. If the heir dies before its fence succeeds,
//! nobody else takes over (the rights stay lost, which is safe).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foundation_crdt::BoundedCounter;
use serde::{Deserialize, Serialize};

use super::counter::actor;
use super::Life;
use crate::time::Instant;

/// How often an unanswered raise or fence is sent again.
pub const ESCROW_RETRY: Duration = Duration::from_millis(200);

/// How long a would-be heir keeps asking holders to fence a dead life.
pub const FENCE_GIVE_UP: Duration = Duration::from_secs(10);

/// One step of the allowance and reclaim protocol, between two lives of one counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// A life asks a holder to allow it to give up `ceiling` rights in total.
    Raise {
        /// The total asked for.
        ceiling: u64,
    },
    /// A holder's answer to a raise: the highest ceiling it allowed the asker, and whether it
    /// has fenced the asker (then it never allows more).
    Allowed {
        /// The highest ceiling allowed.
        ceiling: u64,
        /// Whether the asker is fenced here.
        fenced: bool,
    },
    /// A would-be heir asks a holder to fence `dead`.
    Fence {
        /// The life declared dead.
        dead: Life,
    },
    /// A holder's answer to a fence: the heir it recorded for `dead` (the first it was asked
    /// for) and the highest ceiling it allowed `dead`.
    Fenced {
        /// The dead life.
        dead: Life,
        /// Its heir here.
        heir: Life,
        /// The highest ceiling allowed it here.
        ceiling: u64,
    },
}

/// Steps to send: `(to, step)`.
pub type Steps = Vec<(Life, Step)>;

/// A raise of ours not yet allowed by a majority.
#[derive(Clone, Debug)]
struct Raising {
    target: u64,
    sent: Instant,
}

/// A fence of ours under way.
#[derive(Clone, Debug)]
struct Fencing {
    /// Each holder's answer: its heir and the ceiling it allowed the dead life.
    answers: BTreeMap<Life, (Life, u64)>,
    sent: Instant,
    started: Instant,
}

/// One counter's allowances, as a spender, as a holder answering others and as an heir.
#[derive(Clone, Debug)]
pub(crate) struct Escrow {
    me: Life,
    /// Who allows and fences: the spec's acceptors. Empty: no allowances, no reclaiming.
    holders: BTreeSet<Life>,
    /// What every genesis holder is allowed from the start (every node derives it alike).
    genesis: BTreeMap<Life, u64>,
    /// The ceiling a majority allowed us.
    granted: u64,
    /// The highest ceiling each holder told us it allowed.
    acks: BTreeMap<Life, u64>,
    raising: Option<Raising>,
    /// Holders that told us they fenced us.
    fenced_by: BTreeSet<Life>,
    /// So many holders fenced us that no majority can allow more: no more raises.
    fenced: bool,
    /// As a holder: the highest ceiling allowed to each life that asked.
    allowed: BTreeMap<Life, u64>,
    /// As a holder: the heir recorded for each fenced life.
    heirs: BTreeMap<Life, Life>,
    /// As would-be heir: fences under way, by dead life.
    fencing: BTreeMap<Life, Fencing>,
    /// Lives we reclaimed from (once each), or gave up on.
    settled: BTreeSet<Life>,
}

impl Escrow {
    /// The allowances of a counter whose genesis handed `shares` to the holders.
    pub fn new(me: Life, holders: &BTreeSet<Life>, shares: &BTreeMap<Life, u64>) -> Self {
        let genesis: BTreeMap<Life, u64> = shares
            .iter()
            .map(|(life, share)| (*life, share.div_ceil(2)))
            .collect();
        Self {
            me,
            holders: holders.clone(),
            granted: genesis.get(&me).copied().unwrap_or(0),
            genesis,
            acks: BTreeMap::new(),
            raising: None,
            fenced_by: BTreeSet::new(),
            fenced: false,
            allowed: BTreeMap::new(),
            heirs: BTreeMap::new(),
            fencing: BTreeMap::new(),
            settled: BTreeSet::new(),
        }
    }

    /// The life these allowances are of.
    pub fn me(&self) -> Life {
        self.me
    }

    /// Whether allowances apply: only with holders to ask.
    fn limited(&self) -> bool {
        !self.holders.is_empty()
    }

    fn majority(&self) -> usize {
        self.holders.len() / 2 + 1
    }

    /// What this life may still give up without asking.
    pub fn headroom(&self, counter: &BoundedCounter) -> u64 {
        match self.limited() {
            true => self.granted.saturating_sub(counter.spent(actor(self.me))),
            false => u64::MAX,
        }
    }

    /// Asks for a higher ceiling if this life's allowance is short of `need` or of a quarter
    /// of its rights: enough for half its rights, and for `need`, beyond what it spent.
    pub fn plan_raise(&mut self, now: Instant, counter: &BoundedCounter, need: u64) -> Steps {
        let rights = counter.rights(actor(self.me));
        if !self.limited() || self.fenced || rights == 0 {
            return Steps::new();
        }
        let headroom = self.headroom(counter);
        if headroom >= need && headroom >= rights.div_ceil(4) {
            return Steps::new();
        }
        let ahead = rights.div_ceil(2).max(need).min(rights);
        let target = counter.spent(actor(self.me)).saturating_add(ahead);
        let asked = self.raising.as_ref().map_or(self.granted, |r| r.target);
        if target <= asked {
            return Steps::new();
        }
        self.raising = Some(Raising { target, sent: now });
        self.to_holders(Step::Raise { ceiling: target })
    }

    /// A holder's answer to our raise.
    pub fn allowed(&mut self, holder: Life, ceiling: u64, fenced: bool) {
        if !self.holders.contains(&holder) {
            return;
        }
        if fenced {
            // One holder's record (it may have seen us dead wrongly) does not stop us; enough
            // of them that the rest are no majority does.
            self.fenced_by.insert(holder);
            self.fenced = self.fenced_by.len() > self.holders.len() - self.majority();
        }
        let ack = self.acks.entry(holder).or_default();
        *ack = (*ack).max(ceiling);
        // The highest ceiling at least a majority allowed.
        let mut acks: Vec<u64> = self.acks.values().copied().collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&agreed) = acks.get(self.majority() - 1) {
            self.granted = self.granted.max(agreed);
        }
        if self.fenced
            || self
                .raising
                .as_ref()
                .is_some_and(|r| r.target <= self.granted)
        {
            self.raising = None;
        }
    }

    /// As a holder: `from` asks to be allowed `ceiling`.
    pub fn raise_asked(&mut self, from: Life, ceiling: u64) -> Option<Step> {
        if !self.holders.contains(&self.me) {
            return None;
        }
        let fenced = self.heirs.contains_key(&from);
        let allowed = self.allowed_to(from);
        let ceiling = match fenced {
            true => allowed,
            false => allowed.max(ceiling),
        };
        self.allowed.insert(from, ceiling);
        Some(Step::Allowed { ceiling, fenced })
    }

    /// As a holder: `heir` asks to fence `dead`, which this node sees dead if `ended`.
    pub fn fence_asked(&mut self, heir: Life, dead: Life, ended: bool) -> Option<Step> {
        if !self.holders.contains(&self.me) || !ended || dead == self.me {
            return None;
        }
        let heir = *self.heirs.entry(dead).or_insert(heir);
        let ceiling = self.allowed_to(dead);
        Some(Step::Fenced {
            dead,
            heir,
            ceiling,
        })
    }

    fn allowed_to(&self, life: Life) -> u64 {
        let genesis = self.genesis.get(&life).copied().unwrap_or(0);
        self.allowed.get(&life).copied().unwrap_or(0).max(genesis)
    }

    /// Whether this life is the one to fence `dead`: the lowest holder not `ended`.
    pub fn is_heir_of(&self, dead: Life, ended: impl Fn(Life) -> bool) -> bool {
        let heir = self.holders.iter().find(|h| **h != dead && !ended(**h));
        heir == Some(&self.me) && self.limited()
    }

    /// Starts fencing `dead`, unless that is under way or done.
    pub fn start_fence(&mut self, now: Instant, dead: Life) -> Steps {
        if self.settled.contains(&dead) || self.fencing.contains_key(&dead) || dead == self.me {
            return Steps::new();
        }
        let fencing = Fencing {
            answers: BTreeMap::new(),
            sent: now,
            started: now,
        };
        self.fencing.insert(dead, fencing);
        self.to_holders(Step::Fence { dead })
    }

    /// Stops fencing `dead` (it is back).
    pub fn cancel_fence(&mut self, dead: Life) {
        self.fencing.remove(&dead);
    }

    /// A holder's answer to our fence of `dead`. Returns the ceiling to reclaim above once a
    /// majority names us heir.
    pub fn fenced(&mut self, holder: Life, dead: Life, heir: Life, ceiling: u64) -> Option<u64> {
        if !self.holders.contains(&holder) {
            return None;
        }
        let fencing = self.fencing.get_mut(&dead)?;
        fencing.answers.insert(holder, (heir, ceiling));
        let ours: Vec<u64> = fencing
            .answers
            .values()
            .filter(|(h, _)| *h == self.me)
            .map(|(_, c)| *c)
            .collect();
        let others = fencing.answers.len() - ours.len();
        let won = ours.len() >= self.majority();
        let lost = others > self.holders.len() - self.majority();
        if won || lost {
            self.fencing.remove(&dead);
            self.settled.insert(dead);
        }
        let highest = ours.iter().copied().max().unwrap_or(0);
        won.then_some(highest)
    }

    /// When an unanswered raise or fence is next sent again.
    pub fn due(&self) -> Option<Instant> {
        let raise = self.raising.as_ref().map(|r| r.sent + ESCROW_RETRY);
        let fences = self.fencing.values().map(|f| f.sent + ESCROW_RETRY);
        raise.into_iter().chain(fences).min()
    }

    /// Sends again what is due at `now`; gives up fences older than [`FENCE_GIVE_UP`].
    pub fn handle_timeout(&mut self, now: Instant) -> Steps {
        let mut steps = Steps::new();
        if let Some(raising) = self
            .raising
            .as_mut()
            .filter(|r| r.sent + ESCROW_RETRY <= now)
        {
            raising.sent = now;
            let step = Step::Raise {
                ceiling: raising.target,
            };
            steps.extend(self.to_holders(step));
        }
        let expired: Vec<Life> = self
            .fencing
            .iter()
            .filter(|(_, f)| now.saturating_since(f.started) >= FENCE_GIVE_UP)
            .map(|(dead, _)| *dead)
            .collect();
        for dead in expired {
            self.fencing.remove(&dead);
        }
        for (dead, fencing) in &mut self.fencing {
            if fencing.sent + ESCROW_RETRY > now {
                continue;
            }
            fencing.sent = now;
            let silent = self
                .holders
                .iter()
                .filter(|h| !fencing.answers.contains_key(h));
            steps.extend(silent.map(|h| (*h, Step::Fence { dead: *dead })));
        }
        steps
    }

    fn to_holders(&self, step: Step) -> Steps {
        self.holders.iter().map(|h| (*h, step.clone())).collect()
    }
}

/// What an heir may take of `dead`'s rights once fenced at ceiling `ceiling`: what it was
/// given beyond the ceiling, as far as this replica knows (knowing less only takes less).
pub(crate) fn reclaimable(counter: &BoundedCounter, dead: Life, ceiling: u64) -> u64 {
    let account = actor(dead);
    let rights = counter.rights(account);
    let received = rights.saturating_add(counter.spent(account));
    received.saturating_sub(ceiling).min(rights)
}
