//! foundation-crdt: the replicated data types Foundation's keyspaces are built from.
//!
//! - [`Hlc`]: a hybrid logical clock; time is always an argument, never read inside.
//! - [`LwwMap`]: last-writer-wins map on HLC timestamps, with tombstones and horizon GC.
//! - [`OrSet`]: add-wins observed-remove set with dots.
//! - [`GCounter`], [`PnCounter`]: counters.
//! - [`BoundedCounter`]: a counter that never goes below zero cluster-wide (rights held per
//!   actor: the escrow technique), for budgets and pools.
//! - [`MvReg`]: multi-value register, for conflicts a person must resolve.
//! - [`Canonical`]: versioned canonical bytes, [`Canonical::digest`], and decoding that never
//!   panics.
//!
//! # How the engine uses a type
//!
//! Every type offers the same three paths:
//!
//! 1. **Local change**: a method such as [`LwwMap::set`] or [`OrSet::add`] applies the change
//!    here and returns the op. The engine wraps the op in its envelope `(origin, seq, epoch)`.
//! 2. **Remote op**: `apply(&op)` on every other replica. Idempotent, and commutative for any
//!    ops, so duplicated, reordered or re-sent envelopes are harmless; returns whether the
//!    state changed.
//! 3. **Full state**: `merge(&other)`, for a new or lagging peer. Commutative, associative and
//!    idempotent, and `merge` of a state agrees with applying the ops that built it.
//!
//! States and ops serialise with serde; [`Canonical::encode`] gives canonical bytes (equal
//! states, equal bytes) behind a version byte.
//!
//! ```
//! use foundation_crdt::{Canonical, Hlc, HlcConfig, LwwMap, LwwOp, NodeId};
//!
//! let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
//! let (mut clock_a, mut clock_b) = (Hlc::new(a, HlcConfig::default()), Hlc::new(b, HlcConfig::default()));
//! let (mut map_a, mut map_b) = (LwwMap::<String, u32>::new(), LwwMap::<String, u32>::new());
//!
//! let op = map_a.set("checkout.enabled".into(), 1, clock_a.now(1_000));
//! let bytes = op.encode().unwrap();                        // ship this in an envelope
//! let op = LwwOp::<String, u32>::decode(&bytes).unwrap();
//! clock_b.update(op.entry.ts, 1_001).unwrap();                 // receive: advance our clock
//! assert!(map_b.apply(&op));
//! assert_eq!(map_a.digest().unwrap(), map_b.digest().unwrap());
//! ```
//!
//! # Bounded memory
//!
//! Actors are stable node ids ([`NodeId`]). Per-entry memory never depends on how many nodes
//! wrote: an LWW entry holds one timestamp, an OR-set element and an MV register hold one dot
//! per *concurrent* write. What does grow with every actor that ever wrote is one small record per
//! type (a counter slot, a causal-context entry). When a node leaves for good the engine removes
//! it under a new epoch with `compact_actor(departed, into)` on [`GCounter`], [`PnCounter`],
//! [`OrSet`] and [`MvReg`]: the departed node's contribution is renamed to (or, for counters,
//! added to) `into`, an id reserved for compaction, and its record disappears. The LWW map has
//! no per-actor record; its tombstones are bounded by [`LwwMap::gc_tombstones`].
//!
//! Compaction is safe only when all of these hold, which is what an epoch switch provides:
//!
//! 1. every replica has applied every op by `departed`, and every op that observed its dots, so
//!    all replicas hold the same contribution from it;
//! 2. every replica runs the same compactions, in the same order, on that state, before applying
//!    any op of the new epoch (renamed dots are chosen deterministically from the state);
//! 3. `into` is never used by a live node (derive it from the epoch number, for example);
//! 4. ops from `departed` or from older epochs are refused afterwards, and states from before and
//!    after the switch are never merged: the record that would have rejected them is gone.
//!
//! # Why not the `crdts` crate
//!
//! `crdts` 7.3.2 was the plan where correct, but each type we need hits one of its traps: its
//! collections use `HashMap` (non-canonical bytes, so digests cannot hash them), its Orswot adds
//! keep every adder's clock entry per element (memory per entry grows with actors), its MVReg in a
//! Map stores the whole map clock per value, and it has no LWW map with correct removes. The dot
//! machinery here is small (see [`CausalContext`]) and written against our normal form.

#![warn(missing_docs)]

mod bounded_counter;
mod context;
mod counter;
mod encoding;
mod hlc;
mod join;
mod lww_map;
mod mvreg;
mod node;
mod orset;

pub use bounded_counter::{BoundedCounter, BoundedError, Insufficient};
pub use context::{CausalContext, Dot};
pub use counter::{CounterOverflow, GCounter, GCounterOp, PnCounter, PnCounterOp};
pub use encoding::{fnv1a64, Canonical, DecodeError, EncodeError, InvariantError, FORMAT_VERSION};
pub use hlc::{Hlc, HlcConfig, HlcError, Timestamp, DEFAULT_MAX_DRIFT_MS};
pub use lww_map::{LwwEntry, LwwMap, LwwOp};
pub use mvreg::{MvReg, MvRegOp};
pub use node::NodeId;
pub use orset::{OrSet, OrSetOp};
