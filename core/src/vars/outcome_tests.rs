//! A session's outcome lands in a ledger whole, once, and only with a majority.

use std::collections::BTreeMap;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::{Policy, VarType, VarValue};
use proptest::prelude::*;

use super::tests::{id, life, Net, SECOND};
use super::{outcome, Outcome, Outgoing, SessionId, VarSpec, VarsError};

const LEDGER: &str = "gpu";
const BUDGET: i64 = 100;

fn int(min: i64, max: i64) -> VarType {
    VarType::Int { min, max }
}

/// A GPU slot's ledger: who holds it, what they paid, the budget left, the deciding session.
fn ledger_spec(acceptors: u128) -> VarSpec {
    let fields = [
        ("holder", int(0, 1_000)),
        ("price", int(0, i64::MAX)),
        ("budget", int(0, i64::MAX)),
        ("session", int(0, i64::MAX)),
    ];
    let initial = [
        ("holder", 0),
        ("price", 0),
        ("budget", BUDGET),
        ("session", 0),
    ];
    VarSpec {
        ty: VarType::Record(fields.map(|(k, t)| (k.to_owned(), t)).into()),
        policy: Policy::Coordinated,
        initial: VarValue::Record(
            initial
                .map(|(k, v)| (k.to_owned(), VarValue::Int(v)))
                .into(),
        ),
        acceptors: (1..=acceptors).map(life).collect(),
    }
}

/// Session `session` awards the slot to `holder` at `price`, paid from the budget.
fn award(session: u64, holder: i64, price: u64) -> Outcome {
    let price_value = VarValue::Int(i64::try_from(price).unwrap_or(i64::MAX));
    Outcome {
        session: SessionId(session),
        writes: BTreeMap::from([
            ("holder".to_owned(), VarValue::Int(holder)),
            ("price".to_owned(), price_value),
        ]),
        debits: BTreeMap::from([("budget".to_owned(), price)]),
    }
}

fn ledger_net(n: u128) -> Net {
    let mut net = Net::new(n);
    for vars in net.nodes.values_mut() {
        vars.declare(LEDGER, ledger_spec(n)).expect("declares");
    }
    net
}

impl Net {
    fn commit(&mut self, who: u128, outcome: &Outcome) -> Result<u64, VarsError> {
        let mut out = Outgoing::new();
        let node = self.nodes.get_mut(&id(who)).expect("node");
        let result = node.commit_outcome(self.now, LEDGER, outcome, SECOND, &mut out);
        self.queue(id(who), out);
        result
    }

    fn ledger(&self, node: u128) -> (u64, BTreeMap<String, VarValue>) {
        let (version, value) = self.nodes[&id(node)].get(LEDGER).expect("declared");
        let VarValue::Record(fields) = value else {
            panic!("a record");
        };
        (version, fields.clone())
    }

    fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.run();
            self.advance(std::time::Duration::from_millis(50));
        }
    }
}

fn field(fields: &BTreeMap<String, VarValue>, name: &str) -> i64 {
    match fields.get(name) {
        Some(VarValue::Int(v)) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn an_outcome_writes_every_field_and_debits_the_budget_in_one_version_everywhere() {
    let mut net = ledger_net(3);
    net.commit(1, &award(7, 42, 40)).expect("proposed");
    net.settle(5);
    assert!(net
        .done
        .contains(&(id(1), 1, CasOutcome::Won { version: 1 })));
    for node in 1..=3 {
        let (version, fields) = net.ledger(node);
        assert_eq!(version, 1);
        let got = ["holder", "price", "budget", "session"].map(|f| field(&fields, f));
        assert_eq!(got, [42, 40, 60, 7], "node {node}");
    }
}

#[test]
fn a_session_commits_once_whoever_tries_again() {
    let mut net = ledger_net(3);
    net.commit(1, &award(7, 42, 40)).expect("proposed");
    net.settle(5);
    for who in 1..=3 {
        let again = net.commit(who, &award(7, 9, 10));
        let refused = VarsError::SessionDecided {
            session: SessionId(7),
            version: 1,
        };
        assert_eq!(again, Err(refused), "node {who}");
    }
    assert!(net.wire.is_empty(), "nothing proposed");
    assert_eq!(field(&net.ledger(2).1, "budget"), 60);
    // Sessions commit in increasing order: an earlier one can no longer land.
    let stale = net.commit(3, &award(6, 1, 1));
    let refused = VarsError::SessionStale {
        session: SessionId(6),
        last: 7,
    };
    assert_eq!(stale, Err(refused));
    assert!(net.wire.is_empty(), "nothing proposed");
}

#[test]
fn an_outcome_the_budget_cannot_pay_or_that_names_no_field_is_refused_before_proposing() {
    let mut net = ledger_net(3);
    let too_dear = net.commit(1, &award(1, 5, 101));
    assert!(
        matches!(too_dear, Err(VarsError::Outcome(_))),
        "{too_dear:?}"
    );
    let mut stray = award(2, 5, 1);
    stray.writes.insert("colour".into(), VarValue::Int(1));
    assert!(matches!(net.commit(1, &stray), Err(VarsError::Outcome(_))));
    let mut sneaky = award(3, 5, 1);
    sneaky.writes.insert("session".into(), VarValue::Int(99));
    assert!(matches!(net.commit(1, &sneaky), Err(VarsError::Outcome(_))));
    let out_of_range = award(4, 5_000, 1);
    assert!(matches!(
        net.commit(1, &out_of_range),
        Err(VarsError::Invalid(_))
    ));
    let mut not_a_ledger = award(5, 5, 1);
    not_a_ledger.debits.clear();
    let err = net.nodes.get_mut(&id(1)).expect("node").commit_outcome(
        net.now,
        "x",
        &not_a_ledger,
        SECOND,
        &mut Outgoing::new(),
    );
    assert!(matches!(err, Err(VarsError::Outcome(_))), "{err:?}");
    assert!(net.wire.is_empty());
    assert_eq!(net.ledger(1).0, 0);
}

#[test]
fn a_minority_side_gets_no_majority_and_nothing_of_its_outcome_shows_anywhere() {
    let mut net = ledger_net(5);
    net.cut = [id(4), id(5)].into();
    net.commit(4, &award(1, 4, 30)).expect("proposed");
    net.commit(1, &award(2, 1, 20)).expect("proposed");
    net.settle(30);
    assert!(net.done.contains(&(id(4), 1, CasOutcome::NoMajority)));
    assert!(net
        .done
        .contains(&(id(1), 1, CasOutcome::Won { version: 1 })));
    for node in 1..=3 {
        let (version, fields) = net.ledger(node);
        assert_eq!((version, field(&fields, "session")), (1, 2));
        assert_eq!(field(&fields, "budget"), 80, "only the majority's debit");
    }
    assert_eq!(
        net.ledger(4).0,
        0,
        "the minority side shows nothing, not half"
    );
}

/// One proposer's attempt: which node, which session, who gets the slot, at what price.
fn attempt() -> impl Strategy<Value = (u128, u64, i64, u64)> {
    (1u128..=3, 1u64..=4, 1i64..=9, 0u64..=60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Proposers race sessions (some the same session from two nodes) in any delivery order and
    /// retry whatever lost: every node ends with the same ledger, sessions strictly increase
    /// along the versions (so none wrote twice), each version is one outcome applied whole to
    /// the one before, and the budget never went below zero.
    #[test]
    fn sessions_commit_at_most_once_and_whole_in_any_order(
        attempts in prop::collection::vec(attempt(), 1..6),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..300),
    ) {
        let mut net = ledger_net(3);
        let outcomes: Vec<(u128, Outcome)> =
            attempts.iter().map(|&(who, s, holder, price)| (who, award(s, holder, price))).collect();
        for (who, outcome) in &outcomes {
            let _ = net.commit(*who, outcome);
        }
        for pick in order {
            if net.wire.is_empty() {
                break;
            }
            net.deliver(pick.index(net.wire.len()));
        }
        for _ in 0..4 {
            net.settle(20);
            // Whoever lost proposes again against the value it now knows.
            for (who, outcome) in &outcomes {
                let _ = net.commit(*who, outcome);
            }
        }
        net.settle(20);
        let (version, _) = net.ledger(1);
        for node in 2..=3 {
            prop_assert_eq!(net.ledger(node).0, version, "replicas agree");
        }
        let vars = &net.nodes[&id(1)];
        let mut previous = ledger_spec(3).initial;
        let mut last = 0;
        for v in 1..=version {
            let (_, value) = vars.decided(LEDGER, v).expect("within the register's window");
            let session = outcome::session_of(value).expect("a ledger record");
            prop_assert!(session > last, "session {} after {}", session, last);
            last = session;
            let applied = outcomes.iter().map(|(_, o)| o).filter(|o| o.session.0 == session)
                .any(|o| outcome::apply(&ledger_spec(3).ty, &previous, o).as_ref() == Ok(value));
            prop_assert!(applied, "version {} is no outcome applied whole", v);
            previous = value.clone();
        }
        prop_assert!(field(&net.ledger(1).1, "budget") >= 0);
    }
}
