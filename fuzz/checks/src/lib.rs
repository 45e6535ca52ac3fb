//! The properties the fuzz targets check, one plain function per target: `fuzz/fuzz_targets/*`
//! hand each the bytes libFuzzer finds, and `tests/seeds.rs` hands each its seed corpus
//! (`fuzz/seeds/<target>/`) and mutations of it, so `cargo test --workspace` runs every
//! target's property on a fresh machine without a nightly toolchain or sanitizer build.
//!
//! A check panics when its property fails, which is how libFuzzer and the test harness both
//! learn of a finding.

use std::fmt::Debug;

use serde::{de::DeserializeOwned, Serialize};

pub mod agent_sessions;
pub mod cli_inputs;
pub mod config_files;
pub mod core_input;
pub mod crdt_canonical;
pub mod federation_wire;
pub mod frame_decoder;
pub mod local_adverts;
pub mod membership_datagram;
pub mod replicated_records;
pub mod sealed_datagram;
pub mod services_wire;
pub mod session_wire;
pub mod snapshot_file;
pub mod storage_records;
pub mod typed_values;
pub mod vars_wire;

/// A fuzz target's name (also its binary in `fuzz/` and its seed directory) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target whose check lives here.
pub const TARGETS: &[Target] = &[
    ("agent_sessions", agent_sessions::check),
    ("cli_inputs", cli_inputs::check),
    ("config_files", config_files::check),
    ("core_input", core_input::check),
    ("crdt_canonical", crdt_canonical::check),
    ("federation_wire", federation_wire::check),
    ("frame_decoder", frame_decoder::check),
    ("local_adverts", local_adverts::check),
    ("membership_datagram", membership_datagram::check),
    ("replicated_records", replicated_records::check),
    ("sealed_datagram", sealed_datagram::check),
    ("services_wire", services_wire::check),
    ("session_wire", session_wire::check),
    ("snapshot_file", snapshot_file::check),
    ("storage_records", storage_records::check),
    ("typed_values", typed_values::check),
    ("vars_wire", vars_wire::check),
];

/// If `data` decodes as a `T` (postcard, as every wire message is), checks that the value
/// encodes to bytes that decode to the same value.
pub(crate) fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = postcard::from_bytes::<T>(data) {
        let bytes = postcard::to_stdvec(&value).expect("a decoded value encodes");
        let again = postcard::from_bytes::<T>(&bytes).expect("an encoding decodes");
        assert_eq!(again, value, "decode(encode(v)) != v");
    }
}

/// If `data` decodes as a `T`, checks that its encoding decodes to a value that encodes to the
/// same bytes: for values that may hold NaN (real-valued prices, offers), which is not equal to
/// itself, so `round_trip`'s comparison of values cannot hold.
pub(crate) fn round_trip_bytes<T: Serialize + DeserializeOwned>(data: &[u8]) {
    if let Ok(value) = postcard::from_bytes::<T>(data) {
        let bytes = postcard::to_stdvec(&value).expect("a decoded value encodes");
        let again = postcard::from_bytes::<T>(&bytes).expect("an encoding decodes");
        let twice = postcard::to_stdvec(&again).expect("a decoded value encodes");
        assert_eq!(twice, bytes, "encode(decode(encode(v))) != encode(v)");
    }
}
