//! Arbitrary bytes as the typed values a node reads out of what others sent: a cluster-config
//! value as this node's replica of the `config` keyspace holds it (any node wrote it; every
//! config read decodes through `decode_config_value`), and a message's payload as the
//! transport's inbox decodes it into the application's type (`Message::decode`).
//!
//! Properties: nothing panics; a value decoded as JSON encodes to JSON that decodes to the
//! same value (numbers with a fraction excepted: the JSON parser may round their last bit); a
//! value a typed read accepts is JSON; a refusal names its key. A payload the inbox accepts
//! encodes to bytes that decode to the same value; a refusal says why.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::Bytes;
use foundation_core::services::wire::RpcReply;
use foundation_core::{Channel, NodeId};
use foundation_engine::runtime::{decode_config_value, ConfigError};
use foundation_transport::Message;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// The key every value is read under.
const KEY: &str = "checkout.limits";

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    config_value(data);
    let message = Message::new(
        NodeId::from_u128(2),
        Channel::Coordination,
        Bytes::copy_from_slice(data),
    );
    payload::<u64>(&message);
    payload::<String>(&message);
    payload::<(String, Vec<u8>)>(&message);
    payload::<BTreeMap<String, u64>>(&message);
    payload::<RpcReply>(&message);
}

fn config_value(data: &[u8]) {
    let json = decode_config_value::<Value>(KEY, data);
    let typed = [
        typed::<bool>(data),
        typed::<i64>(data),
        typed::<f64>(data),
        typed::<String>(data),
        typed::<Vec<Value>>(data),
        typed::<BTreeMap<String, Value>>(data),
    ];
    let accepted = typed.iter().any(|&ok| ok);
    assert!(
        !accepted || json.is_ok(),
        "a typed read took what is not JSON"
    );
    let value = match json {
        Ok(value) => value,
        Err(error) => return named(&error),
    };
    let text = serde_json::to_vec(&value).expect("a JSON value encodes");
    let again = decode_config_value::<Value>(KEY, &text).expect("encoded JSON decodes");
    if !has_fraction(&value) {
        assert_eq!(again, value, "decode(encode(v)) != v");
    }
}

/// Whether a typed read accepts `data`; a refusal must name the key.
fn typed<T: DeserializeOwned>(data: &[u8]) -> bool {
    match decode_config_value::<T>(KEY, data) {
        Ok(_) => true,
        Err(error) => {
            named(&error);
            false
        }
    }
}

fn named(error: &ConfigError) {
    assert!(error.to_string().contains(KEY), "a refusal without its key");
}

/// Whether `value` holds a number that is not an integer.
fn has_fraction(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_fraction),
        Value::Object(fields) => fields.values().any(has_fraction),
        _ => false,
    }
}

fn payload<T: Serialize + DeserializeOwned + PartialEq + Debug>(message: &Message) {
    match message.decode::<T>() {
        Ok(value) => {
            let bytes = postcard::to_stdvec(&value).expect("a decoded value encodes");
            let again = postcard::from_bytes::<T>(&bytes).expect("an encoding decodes");
            assert_eq!(again, value, "decode(encode(v)) != v");
        }
        Err(error) => assert!(!error.to_string().is_empty(), "a refusal says why"),
    }
}
