//! Shared harness: a uniform view of the types, seeded shuffles, and the generic laws.

use std::fmt::Debug;

use foundation_crdt::{
    Canonical, GCounter, GCounterOp, Hlc, HlcConfig, LwwMap, LwwOp, MvReg, MvRegOp, NodeId, OrSet,
    OrSetOp, PnCounter, PnCounterOp,
};
use proptest::prelude::*;

/// Replicas in a generated history.
pub const REPLICAS: usize = 3;

/// Cases per property: enough to find ordering bugs, small enough for a debug run well under a
/// minute for the whole crate.
pub const CASES: u32 = 512;

pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// What the generic laws need from a type.
pub trait Crdt: Clone + PartialEq + Debug + Default + Canonical {
    type Op: Clone + Debug;
    fn apply_op(&mut self, op: &Self::Op);
    fn merge_state(&mut self, other: &Self);
    fn check(&self);
}

macro_rules! impl_crdt {
    ($state:ty, $op:ty) => {
        impl Crdt for $state {
            type Op = $op;
            fn apply_op(&mut self, op: &Self::Op) {
                self.apply(op);
            }
            fn merge_state(&mut self, other: &Self) {
                self.merge(other);
            }
            fn check(&self) {
                self.invariants().expect("invariants hold");
            }
        }
    };
}

impl_crdt!(LwwMap<u8, u8>, LwwOp<u8, u8>);
impl_crdt!(OrSet<u8>, OrSetOp<u8>);
impl_crdt!(GCounter, GCounterOp);
impl_crdt!(PnCounter, PnCounterOp);
impl_crdt!(MvReg<u8>, MvRegOp<u8>);

pub fn node(replica: usize) -> NodeId {
    NodeId::from_u128(replica as u128 + 1)
}

/// One replica of a generated history: a state and the node's clock.
pub struct Replica<S> {
    pub state: S,
    pub hlc: Hlc,
}

/// One step of a history: `replica` first merges the full state of `sync_from` (if any) — which
/// decides what it has observed — then performs `action` at wall time `wall_ms`.
#[derive(Clone, Debug)]
pub struct Step<A> {
    pub replica: usize,
    pub sync_from: Option<usize>,
    pub wall_ms: u64,
    pub action: A,
}

pub fn steps<A: Debug + Clone>(
    action: impl Strategy<Value = A>,
    max_len: usize,
) -> impl Strategy<Value = Vec<Step<A>>> {
    let step = (
        0..REPLICAS,
        proptest::option::weighted(0.4, 0..REPLICAS),
        0u64..2_000,
        action,
    )
        .prop_map(|(replica, sync_from, wall_ms, action)| Step {
            replica,
            sync_from,
            wall_ms,
            action,
        });
    proptest::collection::vec(step, 0..max_len)
}

/// Runs a history from empty replicas; returns every op produced (in production order) and the
/// replicas.
pub fn run<S: Crdt, A>(
    steps: &[Step<A>],
    act: impl FnMut(&mut Replica<S>, usize, &A, u64) -> Option<S::Op>,
) -> (Vec<S::Op>, Vec<Replica<S>>) {
    run_from(vec![S::default(); REPLICAS], steps, act)
}

/// Runs a history from the given starting states (one per replica).
pub fn run_from<S: Crdt, A>(
    initial: Vec<S>,
    steps: &[Step<A>],
    mut act: impl FnMut(&mut Replica<S>, usize, &A, u64) -> Option<S::Op>,
) -> (Vec<S::Op>, Vec<Replica<S>>) {
    let mut replicas: Vec<Replica<S>> = initial
        .into_iter()
        .enumerate()
        .map(|(r, state)| Replica {
            state,
            hlc: Hlc::new(
                node(r),
                HlcConfig {
                    max_drift_ms: u64::MAX,
                },
            ),
        })
        .collect();
    let mut ops = Vec::new();
    for step in steps {
        if let Some(from) = step.sync_from.filter(|&f| f != step.replica) {
            let (state, last) = (replicas[from].state.clone(), replicas[from].hlc.last());
            let me = &mut replicas[step.replica];
            me.state.merge_state(&state);
            me.hlc.update(last, step.wall_ms).expect("unbounded drift");
        }
        let me = &mut replicas[step.replica];
        if let Some(op) = act(me, step.replica, &step.action, step.wall_ms) {
            ops.push(op);
        }
        me.state.check();
    }
    (ops, replicas)
}

/// A deterministic PRNG for shuffles inside a property (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `items` in a random order, about a third of them delivered twice.
pub fn shuffled_with_dups<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut rng = Rng(seed);
    let mut out: Vec<T> = items.to_vec();
    for item in items {
        if rng.below(3) == 0 {
            out.push(item.clone());
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

pub fn from_ops<S: Crdt>(ops: &[S::Op]) -> S {
    let mut state = S::default();
    for op in ops {
        state.apply_op(op);
        state.check();
    }
    state
}

pub fn merged<S: Crdt>(a: &S, b: &S) -> S {
    let mut out = a.clone();
    out.merge_state(b);
    out.check();
    out
}

pub fn bytes<S: Crdt>(s: &S) -> Vec<u8> {
    s.encode().expect("encodes")
}

/// Merge is commutative and idempotent, by value and by canonical bytes.
pub fn check_commutative_idempotent<S: Crdt>(a: &S, b: &S) {
    let ab = merged(a, b);
    let ba = merged(b, a);
    assert_eq!(ab, ba, "commutative");
    assert_eq!(bytes(&ab), bytes(&ba));
    assert_eq!(&merged(a, a), a, "idempotent");
    assert_eq!(merged(&ab, b), ab, "absorbs what it already merged");
}

/// Merge is commutative, associative and idempotent, by value and by canonical bytes.
pub fn check_merge_laws<S: Crdt>(a: &S, b: &S, c: &S) {
    check_commutative_idempotent(a, b);
    let ab = merged(a, b);
    let ab_c = merged(&ab, c);
    let a_bc = merged(a, &merged(b, c));
    assert_eq!(ab_c, a_bc, "associative");
    assert_eq!(bytes(&ab_c), bytes(&a_bc));
}

/// Any interleaving with duplicates of the same ops converges to one state with one encoding,
/// which is also what merging the producers' states gives and what decoding round-trips to.
pub fn check_convergence<S: Crdt>(ops: &[S::Op], replicas: &[Replica<S>], seeds: [u64; 2]) {
    let reference = from_ops::<S>(ops);
    for seed in seeds {
        let other = from_ops::<S>(&shuffled_with_dups(ops, seed));
        assert_eq!(other, reference, "interleaving {seed} diverged");
        assert_eq!(bytes(&other), bytes(&reference));
        assert_eq!(other.digest().ok(), reference.digest().ok());
    }
    let mut all = S::default();
    for r in replicas {
        all.merge_state(&r.state);
    }
    assert_eq!(all, reference, "merging states disagrees with applying ops");
    let decoded = S::decode(&bytes(&reference)).expect("round trip");
    assert_eq!(decoded, reference);
}

/// Ops applied on top of a merged state land where applying them to either side and merging
/// would: the op path and the state path agree.
pub fn check_ops_commute_with_merge<S: Crdt>(ops: &[S::Op], split: usize) {
    let split = split.min(ops.len());
    let (left, right) = ops.split_at(split);
    let a = from_ops::<S>(left);
    let b = from_ops::<S>(right);
    let mut via_ops = a.clone();
    for op in right {
        via_ops.apply_op(op);
    }
    assert_eq!(merged(&a, &b), via_ops);
}
