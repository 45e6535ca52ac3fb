//! Property tests for every CRDT law the engine relies on. One test binary (modules below) keeps
//! link time down.

mod common;
mod counters;
mod decode;
mod hlc;
mod lww;
mod mvreg;
mod orset;
