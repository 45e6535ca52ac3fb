//! Arbitrary bytes as the values other nodes replicate into the keyspaces this node reads: a
//! service instance and an agent in the registries, a variable's declaration (whose types
//! nest, so a deep nesting must be refused rather than overflow the stack) and a variable's
//! last-writer-wins record.
//!
//! Properties: nothing panics; whatever decodes encodes to bytes that decode again and encode
//! to themselves (compared as bytes: a value may hold a float, and NaN is not equal to itself).

use foundation_core::agents::record::AgentRecord;
use foundation_core::services::InstanceRecord;
use foundation_core::vars::lww::LwwRecord;
use foundation_core::vars::VarSpec;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    fixed_point(data, InstanceRecord::decode, InstanceRecord::encode);
    fixed_point(data, AgentRecord::decode, AgentRecord::encode);
    fixed_point(data, VarSpec::decode, VarSpec::encode);
    fixed_point(data, LwwRecord::decode, LwwRecord::encode);
}

fn fixed_point<T>(data: &[u8], decode: fn(&[u8]) -> Option<T>, encode: fn(&T) -> Vec<u8>) {
    let Some(value) = decode(data) else { return };
    let bytes = encode(&value);
    let again = decode(&bytes).expect("an encoded record decodes");
    assert_eq!(encode(&again), bytes, "the encoding is not a fixed point");
}
