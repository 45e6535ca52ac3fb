//! Arbitrary bytes as everything services and agents read from a peer: an RPC request (what
//! admission decodes), an RPC reply (what a caller decodes), an agent's request and reply (which
//! share the rpc channel), and an events-channel frame (one published message, an
//! acknowledgement, or a batch — packed, or in the layout of earlier releases — whose messages
//! are read one by one).
//!
//! Properties: nothing panics; whatever decodes encodes back to bytes that decode to the same
//! value; a batch never yields more messages than its count; the messages read from a packed
//! batch, packed again, read back the same.

use crate::round_trip;
use foundation_core::agents::wire::{AgentReply, AgentRequest};
use foundation_core::services::wire::{
    decode_event, BatchBuilder, EventMessage, Published, RpcReply, RpcRequest, WireError,
};

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

fn event_round_trip(event: &EventMessage<'_>) {
    let bytes = postcard::to_stdvec(event).expect("a decoded event encodes");
    let again = decode_event(&bytes).expect("an encoded event decodes");
    assert_eq!(&again, event, "event round trip");
    let (messages, count): (Vec<Result<Published<'_>, WireError>>, u32) = match event {
        EventMessage::Batch(batch) => (batch.messages().collect(), batch.count),
        EventMessage::BatchV0(batch) => (batch.messages().collect(), batch.count),
        _ => return,
    };
    let read: Vec<Published<'_>> = messages.into_iter().map_while(Result::ok).collect();
    assert!(
        read.len() as u64 <= u64::from(count),
        "a batch yielded more than its count"
    );
    let mut packed = BatchBuilder::default();
    for message in &read {
        packed.push(message).expect("a decoded message packs");
    }
    let frame = packed.finish();
    let Ok(EventMessage::Batch(again)) = decode_event(&frame) else {
        panic!("a packed batch does not decode");
    };
    let again: Vec<Published<'_>> = again
        .messages()
        .map(|m| m.expect("a packed message reads"))
        .collect();
    assert_eq!(again, read, "messages packed again read back differently");
}
