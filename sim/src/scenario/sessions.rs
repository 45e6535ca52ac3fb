//! Coordination sessions in a scenario: ledgers declared at their times on their nodes,
//! sessions opened at theirs, all carried by the one carrier of [`crate::sessions`] and
//! checked at the end of every run by [`crate::invariants::sessions`].
//!
//! A ledger's record has fixed fields, so that the checks know where to look: an auction
//! ledger has `holder` (an agent, or `nobody`), `price` and `budget` (the prices are debited
//! from it); a vote ledger has `elected` (a candidate, or `nobody`); both have `session`.
//!
//! In a scenario file:
//!
//! ```toml
//! [[ledger]]                  # a coordinated ledger variable, declared at `time` on `on`
//! name = "gpu"
//! kind = "auction"            # fields holder, price, budget (and session)
//! budget = 3000               # minor units the prices are debited from
//! time = "3s"
//! on = 0                      # optional, default 0
//!
//! [[ledger]]
//! name = "mode"
//! kind = "vote"               # fields elected (and session)
//! candidates = ["fast", "careful"]
//! time = "3s"
//!
//! [[session]]                 # count sessions, every apart, ids id, id+1, …
//! time = "5s"
//! id = 100
//! count = 20                  # optional, default 1
//! every = "1s"                # needed when count > 1
//! caller = "all"              # a node selection: each session's caller is drawn from it
//! mechanism = "sealed_bid"    # or "vote", "tatonnement"
//! capability = "bidder"       # the agents taking part (an [[at]] agents entry gives it)
//! answer_within = "200ms"     # optional, default 200ms
//! commit = "gpu"              # optional ledger (a tatonnement's prices are only reported)
//! commit_timeout = "1s"       # optional, default 1s
//! placed = 0.5                # optional: true, false or the share placed by rendezvous
//!                             # (else coordinated by the caller); default false
//! item = "gpu-slot"           # sealed_bid: item, pricing ("first" | "second"), reserve
//! pricing = "second"
//! reserve = 20
//! # vote: candidates = [...], method ("plurality" | "approval"), quorum (0..1), question
//! # tatonnement: supply = [15.0, 15.0], step (0.5), tolerance (0.01), rounds_max (40), market
//! ```
//!
//! Every run of such a scenario is checked at its end by `one-outcome-per-session` (each
//! ledger), `within-budget` and `matches-machine` (auction ledgers; `matches-machine` for vote
//! ledgers too), `silence-is-not-convergence`, `no-minority-commit` (a side of a `partition`
//! that reaches no majority is a minority from a second after it to the next heal) and, as
//! versions are learned, `ledger-versions-agree` (every node learns the same value for a
//! version).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foundation_agents::market::tatonnement::TatonnementOutcome;
use foundation_agents::variable::{VarType, VarValue};
use foundation_core::agents::sessions::{open, Commit, CommitState, Decision, Mechanism, Settled};
use foundation_core::vars::{Life, SessionId, VarSpec};
use serde::Serialize;

use super::Scenario;
use crate::faults::{Fault, Nodes};
use crate::invariants::sessions::{
    matches_machine, no_minority_commit, one_outcome_per_session, silence_is_not_convergence,
    within_budget, Ledger, Minority,
};
use crate::sessions::{ledger_spec, SessionPlan, SessionRecord, Sessions};
use crate::world::World;

/// Who holds an auctioned item nobody won, and who is elected when nobody is.
pub const NOBODY: &str = "nobody";
/// How long after a partition its minority side may still report a commit: one whose
/// majority answered before the cut can land within it.
const MINORITY_GRACE: Duration = Duration::from_secs(1);
/// Sessions one [[session]] table may open.
const COUNT_MAX: u64 = 100_000;
/// The checks a scenario with sessions runs, by name.
pub const CHECKS: [&str; 6] = [
    "one-outcome-per-session",
    "within-budget",
    "matches-machine",
    "silence-is-not-convergence",
    "no-minority-commit",
    "ledger-versions-agree",
];

/// What a ledger records.
#[derive(Clone, Debug, PartialEq)]
pub enum LedgerKind {
    /// An auctioned item: its holder, the price paid, and the budget prices are debited from.
    Auction {
        /// The budget at the start, in minor units.
        budget: i64,
    },
    /// An elected label.
    Vote {
        /// The labels it may hold (besides `nobody`).
        candidates: Vec<String>,
    },
}

/// A ledger variable, declared at `at` on node `on`; its acceptors are every node's life then.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerDecl {
    /// The variable's name.
    pub name: String,
    /// Its record.
    pub kind: LedgerKind,
    /// When it is declared.
    pub at: Duration,
    /// The node slot that declares it.
    pub on: usize,
    /// The scenario file line, for error messages.
    pub line: Option<usize>,
}

/// `count` sessions, `every` apart from `at`, with ids from `id` up; each one's caller is drawn
/// from `caller` by the seed, and it is placed by rendezvous with chance `placed`.
#[derive(Clone, Debug)]
pub struct SessionDecl {
    /// When the first opens.
    pub at: Duration,
    /// The first one's id.
    pub id: u64,
    /// How many.
    pub count: u64,
    /// Apart by this long.
    pub every: Duration,
    /// Who may open them.
    pub caller: Nodes,
    /// What they decide.
    pub mechanism: Mechanism,
    /// Agents with this capability take part.
    pub capability: String,
    /// How long participants have to answer.
    pub answer_within: Duration,
    /// The ledger the outcome commits to, if any.
    pub commit: Option<String>,
    /// How long a commit may take.
    pub commit_timeout: Duration,
    /// Chance, 0–1, that a session is coordinated where rendezvous places it (else by its
    /// caller).
    pub placed: f64,
    /// The scenario file line, for error messages.
    pub line: Option<usize>,
}

impl SessionDecl {
    /// When each of its sessions opens, and with which id (times saturate, and ids too, for
    /// the declarations validation has not refused yet).
    fn opens(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        (0..self.count).map(|k| {
            let after = self
                .every
                .saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
            (self.at.saturating_add(after), self.id.saturating_add(k))
        })
    }
}

/// A scenario's ledgers and sessions.
#[derive(Clone, Debug, Default)]
pub struct SessionWorkload {
    /// The ledgers.
    pub ledgers: Vec<LedgerDecl>,
    /// The sessions.
    pub sessions: Vec<SessionDecl>,
}

/// What the sessions of a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionCounts {
    /// Sessions opened.
    pub opened: u64,
    /// Sessions not opened: their caller was down.
    pub caller_down: u64,
    /// Outcomes committed to their ledger.
    pub committed: u64,
    /// Sessions whose abort a settle committed.
    pub aborted: u64,
    /// Outcomes the ledger did not take (outrun by a later session, no majority, refused).
    pub refused: u64,
    /// Sessions whose coordinator crashed or found no participants.
    pub lost: u64,
    /// Sessions decided with nothing to commit (a tatonnement, an auction nobody won).
    pub decided: u64,
    /// Answers the drivers refused (replays, wrong kinds, late ones).
    pub answers_refused: u64,
    /// Tatonnements that converged.
    pub converged: u64,
}

impl SessionCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &SessionCounts) {
        self.opened += other.opened;
        self.caller_down += other.caller_down;
        self.committed += other.committed;
        self.aborted += other.aborted;
        self.refused += other.refused;
        self.lost += other.lost;
        self.decided += other.decided;
        self.answers_refused += other.answers_refused;
        self.converged += other.converged;
    }

    fn count(&mut self, r: &SessionRecord) {
        match &r.commit {
            Some((CommitState::Committed { .. } | CommitState::AlreadyCommitted { .. }, _)) => {
                self.committed += 1
            }
            Some((CommitState::NotCommitted(_), _)) => self.refused += 1,
            Some((CommitState::NotRequested, _)) => self.decided += 1,
            None => {}
        }
        let aborted = r
            .settles
            .iter()
            .any(|(_, s, _)| matches!(s, Settled::Aborted { .. }));
        self.aborted += u64::from(aborted);
        self.lost += u64::from(r.lost.is_some());
        let drove = r.drove.as_ref();
        self.answers_refused += drove.map_or(0, |d| d.rejected.len() as u64);
        let converged = drove.map(|d| &d.decision);
        let converged = matches!(
            converged,
            Some(Decision::Tatonnement(TatonnementOutcome::Converged { .. }))
        );
        self.converged += u64::from(converged);
    }
}

impl std::fmt::Display for SessionCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sessions: {} opened ({} more with their caller down) · {} committed · {} aborted · \
             {} refused by the ledger · {} lost with their coordinator · {} decided with \
             nothing to commit · {} answers refused · {} tatonnements converged",
            self.opened,
            self.caller_down,
            self.committed,
            self.aborted,
            self.refused,
            self.lost,
            self.decided,
            self.answers_refused,
            self.converged
        )
    }
}

impl SessionWorkload {
    /// Whether there is anything to run.
    pub fn is_empty(&self) -> bool {
        self.ledgers.is_empty() && self.sessions.is_empty()
    }

    /// Who can hold ledger `name`'s item: the agents of the capabilities whose auctions commit
    /// to it (a `Choice` is bounded, so not every agent of the scenario).
    fn holders(&self, scenario: &Scenario, name: &str) -> BTreeSet<String> {
        let bidding = self.sessions.iter().filter(|s| {
            s.commit.as_deref() == Some(name) && matches!(s.mechanism, Mechanism::SealedBid { .. })
        });
        let capabilities: BTreeSet<&str> = bidding.map(|s| s.capability.as_str()).collect();
        let mut names = BTreeSet::from([NOBODY.to_owned()]);
        for s in &scenario.schedule {
            let Fault::Agents(group) = &s.fault else {
                continue;
            };
            if !capabilities.contains(group.capability.as_str()) {
                continue;
            }
            let slots = group.nodes.resolve(scenario.nodes, &scenario.groups);
            for slot in slots.unwrap_or_default() {
                names.extend((0..group.agents).map(|i| group.agent_name(slot, i)));
            }
        }
        names
    }

    fn ledger(&self, name: &str) -> Option<&LedgerDecl> {
        self.ledgers.iter().find(|l| l.name == name)
    }

    /// Checks the ledgers and sessions against the scenario's cluster and agents; the error
    /// names the scenario file line when there is one.
    pub fn validate(&self, scenario: &Scenario) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for l in &self.ledgers {
            let at = placed_at(l.line);
            if !names.insert(l.name.as_str()) {
                return Err(at(format!("a second [[ledger]] named {:?}", l.name)));
            }
            validate_ledger(l, scenario.nodes).map_err(&at)?;
            let ty = spec(&l.kind, &self.holders(scenario, &l.name), BTreeSet::new()).ty;
            let refused =
                |e: foundation_agents::variable::VarError| format!("ledger {:?}: {e}", l.name);
            ty.validate().map_err(refused).map_err(&at)?;
        }
        let capabilities = capabilities(scenario);
        let mut ids: BTreeMap<u64, Option<usize>> = BTreeMap::new();
        for s in &self.sessions {
            let at = placed_at(s.line);
            self.validate_session(s, scenario, &capabilities)
                .map_err(&at)?;
            let last = s.id.checked_add(s.count - 1).ok_or_else(|| {
                at(format!(
                    "session ids {} and {} more overflow",
                    s.id, s.count
                ))
            })?;
            let taken = ids.range(s.id..=last).next().map(|(id, line)| (*id, *line));
            if let Some((id, line)) = taken {
                let whose = line.map_or(String::new(), |l| format!(" (line {l})"));
                return Err(at(format!(
                    "session id {id} is taken by another [[session]]{whose}"
                )));
            }
            ids.extend((s.id..=last).map(|id| (id, s.line)));
        }
        self.validate_id_order()
    }

    /// Sessions commit to a ledger in increasing id order, so one opened after a higher id on
    /// its ledger could never commit: refused, as a mistake in the file.
    fn validate_id_order(&self) -> Result<(), String> {
        let mut opens: BTreeMap<&str, Vec<Open>> = BTreeMap::new();
        for s in &self.sessions {
            let Some(ledger) = s.commit.as_deref() else {
                continue;
            };
            let each = s.opens().map(|(at, id)| (at, id, s.line));
            opens.entry(ledger).or_default().extend(each);
        }
        for (ledger, mut opens) in opens {
            opens.sort_unstable();
            let late = opens.windows(2).find(|w| w[1].1 < w[0].1);
            if let Some([(t0, before, _), (t, id, line)]) = late {
                return Err(placed_at(*line)(format!(
                    "session {id} opens at {t:?}, after session {before} at {t0:?} on ledger \
                     {ledger:?}: sessions commit to a ledger in increasing id order, so it never \
                     could (give later sessions higher ids)"
                )));
            }
        }
        Ok(())
    }

    fn validate_session(
        &self,
        s: &SessionDecl,
        scenario: &Scenario,
        capabilities: &BTreeSet<String>,
    ) -> Result<(), String> {
        if !(1..=COUNT_MAX).contains(&s.count) {
            return Err(format!(
                "a [[session]]'s count is 1 to {COUNT_MAX}, not {}",
                s.count
            ));
        }
        if s.id == 0 && s.commit.is_some() {
            return Err("session ids start at 1: a ledger's initial record is session 0".into());
        }
        if s.count > 1 && s.every.is_zero() {
            return Err("a [[session]] with count above 1 needs `every` longer than zero".into());
        }
        if s.answer_within.is_zero() || s.commit_timeout.is_zero() {
            return Err("answer_within and commit_timeout must be longer than zero".into());
        }
        if !(0.0..=1.0).contains(&s.placed) {
            return Err(format!("placed = {} is not within 0..1", s.placed));
        }
        let callers = s.caller.resolve(scenario.nodes, &scenario.groups)?;
        if callers.is_empty() {
            return Err(format!("caller {} selects no node", s.caller));
        }
        if !capabilities.contains(&s.capability) {
            return Err(format!(
                "no [[at]] agents entry gives capability {:?}: the session would have no participants",
                s.capability
            ));
        }
        let within = s.answer_within.as_millis() as u64;
        open(SessionId(s.id), &s.mechanism, &["probe".into()], within)?;
        match &s.commit {
            Some(ledger) => self.validate_commit(s, ledger),
            None => Ok(()),
        }
    }

    fn validate_commit(&self, s: &SessionDecl, name: &str) -> Result<(), String> {
        let ledger = self
            .ledger(name)
            .ok_or_else(|| format!("commit = {name:?}: no [[ledger]] has that name"))?;
        if s.at < ledger.at {
            return Err(format!(
                "session {} opens at {:?}, before its ledger {name:?} is declared at {:?}",
                s.id, s.at, ledger.at
            ));
        }
        match (&s.mechanism, &ledger.kind) {
            (Mechanism::SealedBid { .. }, LedgerKind::Auction { .. }) => Ok(()),
            (Mechanism::Vote { candidates, .. }, LedgerKind::Vote { candidates: labels }) => {
                match candidates.iter().find(|c| !labels.contains(c)) {
                    Some(c) => Err(format!(
                        "candidate {c:?} is not one the ledger {name:?} can hold ({})",
                        labels.join(", ")
                    )),
                    None => Ok(()),
                }
            }
            (Mechanism::Tatonnement { .. }, _) => {
                Err("a tatonnement's prices are reported, not committed: drop `commit`".into())
            }
            (m, _) => Err(format!(
                "a {} cannot commit to the ledger {name:?}, which is not of its kind",
                m.name()
            )),
        }
    }
}

/// Puts "line N: " in front of a problem, when the line is known (`split_line` keeps it).
fn placed_at(line: Option<usize>) -> impl Fn(String) -> String {
    move |e| match line {
        Some(line) => format!("line {line}: {e}"),
        None => e,
    }
}

fn validate_ledger(l: &LedgerDecl, nodes: usize) -> Result<(), String> {
    if l.on >= nodes {
        return Err(format!(
            "ledger {:?} is declared on node {}, but the cluster has {nodes}",
            l.name, l.on
        ));
    }
    match &l.kind {
        LedgerKind::Auction { budget } if *budget < 0 => Err(format!(
            "ledger {:?}: budget {budget} is below zero",
            l.name
        )),
        LedgerKind::Vote { candidates } => {
            let distinct: BTreeSet<&String> = candidates.iter().collect();
            if candidates.is_empty() || distinct.len() != candidates.len() {
                return Err(format!(
                    "ledger {:?} needs distinct candidates, at least one",
                    l.name
                ));
            }
            if distinct.contains(&NOBODY.to_owned()) {
                return Err(format!("{NOBODY:?} is what a ledger holds before any vote"));
            }
            Ok(())
        }
        LedgerKind::Auction { .. } => Ok(()),
    }
}

/// The capabilities the scenario's agent groups give.
fn capabilities(scenario: &Scenario) -> BTreeSet<String> {
    let groups = scenario.schedule.iter().filter_map(|s| match &s.fault {
        Fault::Agents(group) => Some(group.capability.clone()),
        _ => None,
    });
    groups.collect()
}

/// The partitions' minority sides: from a grace after each partition to the next heal (or the
/// end). A side is a minority when the nodes it can still reach are not a majority.
fn minority_windows(scenario: &Scenario) -> Vec<Minority> {
    let (n, groups) = (scenario.nodes, &scenario.groups);
    let mut schedule: Vec<_> = scenario.schedule.iter().collect();
    schedule.sort_by_key(|s| s.at);
    let end = micros(scenario.duration);
    let mut windows = Vec::new();
    for (i, s) in schedule.iter().enumerate() {
        let Fault::Partition(a, b) = &s.fault else {
            continue;
        };
        let (Ok(a), Ok(b)) = (a.resolve(n, groups), b.resolve(n, groups)) else {
            continue;
        };
        let heal = schedule[i..]
            .iter()
            .find(|h| matches!(h.fault, Fault::Heal));
        let to = heal.map_or(end, |h| micros(h.at));
        let from = micros(s.at.saturating_add(MINORITY_GRACE));
        let (a, b): (BTreeSet<usize>, BTreeSet<usize>) =
            (a.into_iter().collect(), b.into_iter().collect());
        for (side, other) in [(a.clone(), &b), (b.clone(), &a)] {
            if 2 * n.saturating_sub(other.len()) <= n && from < to {
                windows.push((from, to, side));
            }
        }
    }
    windows
}

/// Something of the sessions to do at a time.
#[derive(Clone, Copy)]
enum Due {
    /// Declare ledger `i`.
    Declare(usize),
    /// Open a session of declaration `i` with this id.
    Open(usize, u64),
}

/// A scenario's sessions in one run: the carrier, what is due when, and the ledgers' histories
/// as the nodes learned them.
pub(crate) struct SessionRun {
    workload: SessionWorkload,
    /// Each ledger's spec but its acceptors (the lives when it is declared).
    specs: Vec<VarSpec>,
    callers: Vec<Vec<usize>>,
    carrier: Sessions,
    due: Vec<(u64, Due)>,
    next: usize,
    ledgers: Vec<Ledger>,
    minority: Vec<Minority>,
    caller_down: u64,
}

/// A session's opening: when, its id, and the file line of its table.
type Open = (Duration, u64, Option<usize>);

/// A violation of a named check (or of the scenario itself).
pub(crate) type Found = (&'static str, String);

impl SessionRun {
    pub(crate) fn new(scenario: &Scenario, workload: SessionWorkload) -> Self {
        let specs: Vec<VarSpec> = workload
            .ledgers
            .iter()
            .map(|l| {
                spec(
                    &l.kind,
                    &workload.holders(scenario, &l.name),
                    BTreeSet::new(),
                )
            })
            .collect();
        let mut due: Vec<(u64, Due)> = Vec::new();
        for (i, l) in workload.ledgers.iter().enumerate() {
            due.push((micros(l.at), Due::Declare(i)));
        }
        for (i, s) in workload.sessions.iter().enumerate() {
            due.extend(s.opens().map(|(at, id)| (micros(at), Due::Open(i, id))));
        }
        // Stable, ledgers first: a ledger declared at a session's time exists when it opens.
        due.sort_by_key(|(at, what)| (*at, matches!(what, Due::Open(..))));
        let ledgers = workload
            .ledgers
            .iter()
            .zip(&specs)
            .map(|(l, spec)| Ledger::new(&l.name, spec.initial.clone()))
            .collect();
        let callers = workload
            .sessions
            .iter()
            .map(|s| s.caller.resolve(scenario.nodes, &scenario.groups))
            .map(Result::unwrap_or_default)
            .collect();
        Self {
            workload,
            specs,
            callers,
            carrier: Sessions::default(),
            due,
            next: 0,
            ledgers,
            minority: minority_windows(scenario),
            caller_down: 0,
        }
    }

    /// When something of the sessions is next due (world µs).
    pub(crate) fn next_us(&self, world: &World) -> u64 {
        let due = self.due.get(self.next).map_or(u64::MAX, |(at, _)| *at);
        due.min(self.carrier.next_wake(world).unwrap_or(u64::MAX))
    }

    /// Declares the ledgers and opens the sessions due by now, then carries them.
    pub(crate) fn act(&mut self, world: &mut World) -> Vec<Found> {
        let mut found = Vec::new();
        while let Some(&(at, what)) = self.due.get(self.next) {
            if at > world.now_us() {
                break;
            }
            self.next += 1;
            match what {
                Due::Declare(i) => found.extend(self.declare(world, i)),
                Due::Open(i, id) => self.open(world, i, id),
            }
        }
        found.extend(self.poll(world));
        found
    }

    /// Carries the sessions after a step of the world; learns the ledgers' new versions.
    pub(crate) fn poll(&mut self, world: &mut World) -> Vec<Found> {
        self.carrier.poll(world);
        let mut found = Vec::new();
        for (slot, event) in self.carrier.take_vars_events() {
            for ledger in &mut self.ledgers {
                if let Err(e) = ledger.learn(slot, &event) {
                    found.push(("ledger-versions-agree", e));
                }
            }
        }
        found
    }

    fn declare(&mut self, world: &mut World, i: usize) -> Option<Found> {
        let l = &self.workload.ledgers[i];
        let acceptors = (0..world.nodes().len())
            .map(|slot| Life {
                node: world.node(slot).id(),
                generation: world.node(slot).generation(),
            })
            .collect();
        let spec = VarSpec {
            acceptors,
            ..self.specs[i].clone()
        };
        let (name, on) = (l.name.clone(), l.on);
        let declared = world.with_core(on, |core, now| core.declare_var(now, &name, spec));
        let problem = match declared {
            Some(Ok(())) => return None,
            Some(Err(e)) => e.to_string(),
            None => format!("n{on} is down"),
        };
        Some((
            "scenario",
            format!("ledger {name:?} not declared: {problem}"),
        ))
    }

    fn open(&mut self, world: &mut World, i: usize, id: u64) {
        let s = &self.workload.sessions[i];
        let callers = &self.callers[i];
        let Some(&caller) = callers.get(world.random_below(callers.len() as u64) as usize) else {
            self.caller_down += 1; // An unvalidated scenario's selection of no node.
            return;
        };
        // Drawn in thousandths: the world's RNG gives integers.
        let placed = world.random_below(1000) < (s.placed * 1000.0) as u64;
        let commit = s.commit.as_deref().and_then(|name| {
            let ledger = self.workload.ledger(name)?;
            Some(commit(ledger, s.commit_timeout))
        });
        let plan = SessionPlan {
            id: SessionId(id),
            caller,
            mechanism: s.mechanism.clone(),
            capability: s.capability.clone(),
            answer_within: s.answer_within,
            commit,
            placed,
        };
        if !self.carrier.open(world, plan) {
            self.caller_down += 1;
        }
    }

    /// The end-of-run checks over every session and ledger.
    pub(crate) fn at_end(&self) -> Vec<Found> {
        let records = self.carrier.records();
        let mut checks: Vec<(&'static str, Result<(), String>)> = Vec::new();
        for (decl, ledger) in self.workload.ledgers.iter().zip(&self.ledgers) {
            checks.push((CHECKS[0], one_outcome_per_session(ledger, records)));
            match decl.kind {
                LedgerKind::Auction { .. } => {
                    checks.push((CHECKS[1], within_budget(ledger, records, "budget")));
                    let matched = matches_machine(ledger, records, "holder", Some("price"));
                    checks.push((CHECKS[2], matched));
                }
                LedgerKind::Vote { .. } => {
                    checks.push((CHECKS[2], matches_machine(ledger, records, "elected", None)));
                }
            }
        }
        checks.push((CHECKS[3], silence_is_not_convergence(records)));
        checks.push((CHECKS[4], no_minority_commit(records, &self.minority)));
        let failed = checks
            .into_iter()
            .filter_map(|(name, c)| c.err().map(|e| (name, e)));
        failed.collect()
    }

    /// What the sessions did.
    pub(crate) fn counts(&self) -> SessionCounts {
        let mut counts = SessionCounts {
            opened: self.carrier.records().len() as u64,
            caller_down: self.caller_down,
            ..SessionCounts::default()
        };
        for r in self.carrier.records() {
            counts.count(r);
        }
        counts
    }
}

/// `d` in world µs; past the last one, the last one (never reached, so never due).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Where a session of `ledger`'s kind writes its outcome.
fn commit(ledger: &LedgerDecl, timeout: Duration) -> Commit {
    let auction = matches!(ledger.kind, LedgerKind::Auction { .. });
    Commit {
        ledger: ledger.name.clone(),
        winner_field: if auction { "holder" } else { "elected" }.to_owned(),
        price_field: auction.then(|| "price".to_owned()),
        budget_field: auction.then(|| "budget".to_owned()),
        counter: None,
        elected_writes: BTreeMap::new(),
        timeout,
    }
}

/// The ledger variable of `kind`: a coordinated record of its fields and the session that
/// wrote it last.
fn spec(kind: &LedgerKind, holders: &BTreeSet<String>, acceptors: BTreeSet<Life>) -> VarSpec {
    let whole = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    let nobody = || VarValue::Choice(NOBODY.into());
    let fields = match kind {
        LedgerKind::Auction { budget } => vec![
            ("holder", VarType::Choice(holders.clone()), nobody()),
            ("price", whole.clone(), VarValue::Int(0)),
            ("budget", whole, VarValue::Int(*budget)),
        ],
        LedgerKind::Vote { candidates } => {
            let mut labels: BTreeSet<String> = candidates.iter().cloned().collect();
            labels.insert(NOBODY.into());
            vec![("elected", VarType::Choice(labels), nobody())]
        }
    };
    ledger_spec(fields, acceptors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::parse;

    const FILE: &str = r#"
nodes = 3

[[at]]
time = "0s"
agents = "all"
agent = "voter"

[[session]]
time = "999999999s"
id = 1
count = 100000
every = "999999999s"
caller = "all"
mechanism = "vote"
capability = "voter"
candidates = ["a", "b"]
"#;

    /// A file may schedule sessions as far out as its durations allow: their times saturate
    /// (they never open) instead of wrapping round to early ones.
    #[test]
    fn sessions_far_past_the_end_are_scheduled_without_overflow() {
        let scenario = parse(FILE, "far.toml").expect("parses");
        let workload = scenario.sessions.clone().expect("sessions");
        let run = SessionRun::new(&scenario, workload);
        assert_eq!(run.due.len(), 100_000);
        let first = 999_999_999_000_000;
        assert!(run.due.iter().all(|(at, _)| *at >= first), "a time wrapped");
    }
}
