//! Arbitrary bytes through every decoder of received input: the incremental frame decoder (with
//! a maximum taken from the first input byte and the rest fed in chunks whose sizes come from
//! the input too), the datagram envelope, the stream header, the hello message, and the frames of
//! a multiplexed RPC stream (every frame the decoder hands out, and the whole input, decoded as
//! a multiplexed frame body).
//!
//! Properties: nothing panics; no frame is ever larger than the decoder's maximum; after an
//! oversized prefix the decoder keeps reporting an error instead of handing out a frame; a
//! multiplexed RPC frame that decodes encodes back to the same bytes.

use bytes::Bytes;
use foundation_transport::frame::{
    decode_datagram, decode_message, FrameDecoder, FrameError, StreamHeader, STREAM_HEADER_LEN,
};
use foundation_transport::rpc::codec::MuxFrame;
use foundation_transport::wire::Hello;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Maxima from 0 to 255 bytes cover the interesting boundaries with short inputs; the top
    // bit picks a large maximum so long frames are exercised too.
    let max = if first & 0x80 == 0 {
        usize::from(first)
    } else {
        usize::from(first & 0x7f) << 10
    };

    // The frame decoder, fed the rest in chunks whose sizes come from the first input bytes.
    let cuts: Vec<usize> = rest
        .iter()
        .take(8)
        .map(|b| usize::from(*b % 17) + 1)
        .collect();
    let mut decoder = FrameDecoder::new(max);
    let mut chunked = Vec::new();
    let mut refused = false;
    let (mut at, mut i) = (0, 0);
    while at < rest.len() && !refused {
        let end = (at + cuts[i % cuts.len()]).min(rest.len());
        decoder.extend(&rest[at..end]);
        at = end;
        i += 1;
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame of {} > max {max}", frame.len());
                    chunked.push(frame);
                }
                Ok(None) => break,
                Err(FrameError::Oversized { len, max: limit }) => {
                    assert!(len > max && limit == max);
                    // A decoder that refused a prefix keeps refusing; it never yields the body.
                    assert!(decoder.next_frame().is_err());
                    refused = true;
                    break;
                }
                Err(other) => panic!("frame decoder reported an unexpected error: {other}"),
            }
        }
    }
    let chunked_finish = decoder.finish();

    // The whole input at once yields exactly the same frames and the same outcome.
    let mut whole = FrameDecoder::new(max);
    whole.extend(rest);
    let mut frames = Vec::new();
    let whole_refused = loop {
        match whole.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert_eq!(frames, chunked, "chunking changed the frames");
    assert_eq!(
        whole_refused, refused,
        "chunking changed whether input was refused"
    );
    if !refused {
        assert_eq!(whole.finish(), chunked_finish);
    }

    // Multiplexed RPC frames: each frame body, and the whole input as one body.
    for body in frames.iter().cloned().chain([Bytes::copy_from_slice(rest)]) {
        if let Ok(frame) = MuxFrame::decode(body.clone()) {
            let mut again = bytes::BytesMut::new();
            frame.encode(&mut again);
            assert_eq!(
                &again[foundation_transport::frame::FRAME_PREFIX_LEN..],
                &body[..],
                "rpc frame does not round-trip"
            );
        }
    }

    // Datagram envelope.
    if let Ok(payload) = decode_datagram(Bytes::copy_from_slice(rest), max) {
        assert!(payload.len() < max.max(1));
    }

    // Stream header.
    if rest.len() >= STREAM_HEADER_LEN {
        let header = [rest[0], rest[1], rest[2]];
        if let Ok(decoded) = StreamHeader::decode(header) {
            assert_eq!(decoded.encode(), header, "header does not round-trip");
        }
    }

    // The hello, the first message any peer sends us.
    if let Ok(hello) = decode_message::<Hello>(rest) {
        let again = foundation_transport::frame::encode_message(&hello).expect("re-encode");
        assert_eq!(decode_message::<Hello>(&again).as_ref(), Ok(&hello));
    }
}
