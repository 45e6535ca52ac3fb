//! Arbitrary bytes as everything services and agents read from a peer: an RPC request (what
//! admission decodes), an RPC reply (what a caller decodes), an agent's request and reply (which
//! share the rpc channel), and an events-channel frame (one published message, an
//! acknowledgement, or a batch, whose messages are read one by one).
//!
//! Properties: nothing panics; whatever decodes encodes back to bytes that decode to the same
//! value; a batch never yields more messages than its count.

use std::fmt::Debug;

use foundation_core::agents::wire::{AgentReply, AgentRequest};
use foundation_core::services::wire::{
    decode_event, EventMessage, Published, RpcReply, RpcRequest,
};
use serde::{de::DeserializeOwned, Serialize};

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    round_trip::<RpcRequest>(data);
    round_trip::<RpcReply>(data);
    round_trip::<AgentReply>(data);
    if let Ok(request) = AgentRequest::decode(data) {
        let again = AgentRequest::decode(&request.encode());
        assert_eq!(again.as_ref(), Ok(&request), "agent request round trip");
    }
    if let Ok(event) = decode_event(data) {
        event_round_trip(&event);
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = postcard::from_bytes::<T>(data) {
        let bytes = postcard::to_stdvec(&value).expect("a decoded value encodes");
        let again = postcard::from_bytes::<T>(&bytes).expect("an encoding decodes");
        assert_eq!(again, value, "decode(encode(v)) != v");
    }
}

fn event_round_trip(event: &EventMessage<'_>) {
    let bytes = postcard::to_stdvec(event).expect("a decoded event encodes");
    let again = decode_event(&bytes).expect("an encoded event decodes");
    assert_eq!(&again, event, "event round trip");
    if let EventMessage::Batch(batch) = event {
        let mut read = 0u64;
        for message in batch.messages() {
            let Ok(message) = message else { break };
            read += 1;
            let mut item = Vec::new();
            message
                .encode_into(&mut item)
                .expect("a decoded message encodes");
            let decoded = postcard::from_bytes::<Published<'_>>(&item).expect("it decodes");
            assert_eq!(decoded, message, "batch item round trip");
        }
        assert!(
            read <= u64::from(batch.count),
            "a batch yielded more than its count"
        );
    }
}
