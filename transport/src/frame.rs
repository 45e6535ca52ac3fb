//! Wire framing: stream headers, length-prefixed frames and datagram envelopes.
//!
//! Every stream starts with a three-byte header — magic, wire version, channel tag — so a
//! receiver knows what a stream carries before reading it, and a peer speaking another version
//! is refused instead of misread. Frames on a stream are a 4-byte big-endian length followed by
//! that many payload bytes. A datagram is one version byte followed by its payload.
//!
//! Decoders check every length against the channel's maximum *before* allocating, and report
//! malformed input as a [`FrameError`]; nothing here panics on received bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use foundation_core::Channel;

/// First byte of every stream.
pub const STREAM_MAGIC: u8 = 0xF0;
/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// Bytes in a stream header.
pub const STREAM_HEADER_LEN: usize = 3;
/// Bytes in a frame's length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;

/// What is wrong with received bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream does not start with Foundation's magic byte.
    #[error("stream does not start with the Foundation magic byte (got {0:#04x})")]
    BadMagic(u8),
    /// The peer speaks a wire version this build does not.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The stream header names no known channel, or a channel that is not carried on this kind of stream.
    #[error("unknown or misplaced channel tag {0}")]
    UnknownChannel(u8),
    /// A frame or datagram is larger than the channel allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced or actual size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended in the middle of a header or frame.
    #[error("input ended inside a frame ({buffered} bytes left over)")]
    Truncated {
        /// Bytes received of the incomplete frame.
        buffered: usize,
    },
    /// A datagram with no version byte.
    #[error("empty datagram")]
    EmptyDatagram,
    /// The payload is not a valid encoding of the expected message type.
    #[error("payload does not decode: {0}")]
    Payload(String),
}

/// Tag of the stream on which two nodes introduce themselves after the TLS handshake.
pub const HELLO_TAG: u8 = 0;
/// Tag of the long-lived stream that multiplexes small RPC requests (see [`crate::rpc`]).
/// Nodes from before it refuse this stream, so they do not take RPC from this version.
pub const RPC_MUX_TAG: u8 = 0x10;

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The introduction exchanged once per connection.
    Hello,
    /// Traffic of one channel.
    Channel(Channel),
    /// Many small RPC requests and their responses, each with an id (see [`crate::rpc::codec`]).
    RpcMux,
}

/// The header that opens every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    /// What the stream carries.
    pub kind: StreamKind,
}

impl StreamHeader {
    /// The header of a stream of `channel`.
    pub const fn for_channel(channel: Channel) -> Self {
        Self {
            kind: StreamKind::Channel(channel),
        }
    }

    /// The header of the hello stream.
    pub const HELLO: Self = Self {
        kind: StreamKind::Hello,
    };

    /// The header of a multiplexed RPC stream.
    pub const RPC_MUX: Self = Self {
        kind: StreamKind::RpcMux,
    };

    /// The channel this stream carries, if it carries one.
    pub const fn channel(self) -> Option<Channel> {
        match self.kind {
            StreamKind::Hello => None,
            StreamKind::Channel(channel) => Some(channel),
            StreamKind::RpcMux => Some(Channel::Rpc),
        }
    }

    /// The header bytes.
    pub fn encode(self) -> [u8; STREAM_HEADER_LEN] {
        let tag = match self.kind {
            StreamKind::Hello => HELLO_TAG,
            StreamKind::Channel(channel) => channel.tag(),
            StreamKind::RpcMux => RPC_MUX_TAG,
        };
        [STREAM_MAGIC, WIRE_VERSION, tag]
    }

    /// Parses a header.
    pub fn decode(bytes: [u8; STREAM_HEADER_LEN]) -> Result<Self, FrameError> {
        let [magic, version, tag] = bytes;
        if magic != STREAM_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if version != WIRE_VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        if tag == HELLO_TAG {
            return Ok(Self::HELLO);
        }
        if tag == RPC_MUX_TAG {
            return Ok(Self::RPC_MUX);
        }
        let channel = Channel::from_tag(tag).ok_or(FrameError::UnknownChannel(tag))?;
        Ok(Self::for_channel(channel))
    }
}

/// Appends one length-prefixed frame to `out`.
pub fn encode_frame(out: &mut BytesMut, payload: &[u8], max: usize) -> Result<(), FrameError> {
    if payload.len() > max || payload.len() > u32::MAX as usize {
        return Err(FrameError::Oversized {
            len: payload.len(),
            max,
        });
    }
    out.reserve(FRAME_PREFIX_LEN + payload.len());
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    Ok(())
}

/// Incremental decoder of length-prefixed frames: feed it chunks as they arrive, take frames out.
///
/// Frames are split off the internal buffer without copying.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_frame,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// An oversized length prefix is an error as soon as the prefix is seen, so a hostile peer
    /// cannot make us buffer up to its claimed size.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < FRAME_PREFIX_LEN {
            return Ok(None);
        }
        let mut prefix = &self.buffer[..FRAME_PREFIX_LEN];
        let len = prefix.get_u32() as usize;
        if len > self.max_frame {
            return Err(FrameError::Oversized {
                len,
                max: self.max_frame,
            });
        }
        if self.buffer.len() < FRAME_PREFIX_LEN + len {
            self.buffer
                .reserve(FRAME_PREFIX_LEN + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(FRAME_PREFIX_LEN);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// Call at end of stream: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffer.len() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

/// Wraps a datagram payload in its envelope.
pub fn encode_datagram(payload: &[u8], max: usize) -> Result<Bytes, FrameError> {
    let len = payload.len() + 1;
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(WIRE_VERSION);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Unwraps a received datagram.
pub fn decode_datagram(mut datagram: Bytes, max: usize) -> Result<Bytes, FrameError> {
    if datagram.len() > max {
        return Err(FrameError::Oversized {
            len: datagram.len(),
            max,
        });
    }
    match datagram.first().copied() {
        None => Err(FrameError::EmptyDatagram),
        Some(WIRE_VERSION) => {
            datagram.advance(1);
            Ok(datagram)
        }
        Some(other) => Err(FrameError::UnsupportedVersion(other)),
    }
}

/// Encodes a typed message as a frame payload.
pub fn encode_message<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_stdvec(message).map_err(|e| FrameError::Payload(e.to_string()))
}

/// Decodes a frame payload as a typed message; trailing bytes are an error.
pub fn decode_message<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (message, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Payload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Payload(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in payloads {
            encode_frame(&mut out, p, 1 << 20).unwrap();
        }
        out.to_vec()
    }

    #[test]
    fn oversized_prefix_is_rejected_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&1000u32.to_be_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::Oversized { len: 1000, max: 16 })
        );
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_truncated() {
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&[0, 0, 0, 5, 1, 2]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.finish(), Err(FrameError::Truncated { buffered: 6 }));
    }

    #[test]
    fn stream_headers_check_magic_version_and_channel() {
        for good in [
            StreamHeader::HELLO,
            StreamHeader::for_channel(Channel::Events),
            StreamHeader::RPC_MUX,
        ] {
            assert_eq!(StreamHeader::decode(good.encode()), Ok(good));
        }
        assert_eq!(
            StreamHeader::decode([0, 1, 4]),
            Err(FrameError::BadMagic(0))
        );
        assert_eq!(
            StreamHeader::decode([STREAM_MAGIC, 9, 4]),
            Err(FrameError::UnsupportedVersion(9))
        );
        assert_eq!(
            StreamHeader::decode([STREAM_MAGIC, WIRE_VERSION, 99]),
            Err(FrameError::UnknownChannel(99))
        );
    }

    #[test]
    fn datagrams_carry_a_version_and_respect_the_limit() {
        let d = encode_datagram(b"ping", 1200).unwrap();
        assert_eq!(
            decode_datagram(d, 1200).unwrap(),
            Bytes::from_static(b"ping")
        );
        assert!(encode_datagram(&[0; 1200], 1200).is_err());
        assert_eq!(
            decode_datagram(Bytes::new(), 1200),
            Err(FrameError::EmptyDatagram)
        );
        assert_eq!(
            decode_datagram(Bytes::from_static(&[7, 1]), 1200),
            Err(FrameError::UnsupportedVersion(7))
        );
    }

    #[test]
    fn typed_messages_reject_trailing_bytes() {
        let mut bytes = encode_message(&(7u32, "x".to_string())).unwrap();
        assert_eq!(
            decode_message::<(u32, String)>(&bytes),
            Ok((7, "x".to_string()))
        );
        bytes.push(0);
        assert!(decode_message::<(u32, String)>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn frames_survive_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            cut in proptest::collection::vec(1usize..40, 1..32),
        ) {
            let wire = frames_of(&payloads);
            let mut decoder = FrameDecoder::new(1 << 20);
            let mut got = Vec::new();
            let (mut at, mut cuts) = (0, cut.iter().cycle());
            while at < wire.len() {
                let end = (at + cuts.next().unwrap()).min(wire.len());
                decoder.extend(&wire[at..end]);
                at = end;
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(decoder.finish(), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..300) {
            let mut decoder = FrameDecoder::new(max);
            decoder.extend(&bytes);
            while let Ok(Some(frame)) = decoder.next_frame() {
                prop_assert!(frame.len() <= max);
            }
            let _ = decoder.finish();
            let _ = decode_datagram(Bytes::from(bytes.clone()), max);
            if bytes.len() >= STREAM_HEADER_LEN {
                let _ = StreamHeader::decode([bytes[0], bytes[1], bytes[2]]);
            }
            let _ = decode_message::<crate::wire::Hello>(&bytes);
        }
    }
}
