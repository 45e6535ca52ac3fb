//! A state that shows nobody overdrawn can still overdraw an actor when merged: the merge
//! takes each total's maximum, so two states that disagree on an actor's history (one saw it
//! hand its rights away, the other saw it draw them) add up to more than it held. Honest
//! replicas never disagree so (each actor's totals in any state are a prefix of its own
//! history), so such a state came from a dishonest or corrupt replica and is refused whole,
//! like one overdrawn by itself.

use foundation_crdt::{BoundedCounter, NodeId};

fn actor(n: u128) -> NodeId {
    NodeId::from_u128(n)
}

#[test]
fn a_state_valid_alone_whose_merge_overdraws_an_actor_is_refused_and_nothing_changes() {
    let (a, b) = (actor(1), actor(2));
    let mut mine = BoundedCounter::new();
    mine.add(a, 10).unwrap();
    mine.hand_over(a, b, 10).unwrap();
    let mut theirs = BoundedCounter::new();
    theirs.add(a, 10).unwrap();
    theirs.draw(a, 5).unwrap();
    assert!(theirs.invariants().is_ok(), "valid on its own");
    let before = mine.clone();
    assert!(mine.merge(&theirs).is_err(), "the merge overdraws {a}");
    assert_eq!(mine, before);
    assert!(mine.invariants().is_ok());
}
