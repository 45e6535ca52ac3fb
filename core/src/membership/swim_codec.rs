//! The codec foca speaks: byte for byte what `foca::PostcardCodec` writes, without its cost.
//!
//! Postcard pushes a header into foca's `BufMut` one byte at a time, each push checking the
//! limit; in the simulator that was a tenth of all instructions. Here a header or member is
//! laid out in a stack buffer and written with one `put_slice`. The layout must stay postcard's
//! (varint integers, fields in declaration order, enum variants as their varint index, `u8` and
//! IP octets raw) because peers running older builds decode with postcard; the tests check it
//! against postcard for every message kind. Decoding is rare next to encoding (a header is
//! encoded per datagram sent and members are encoded once per broadcast), so it stays postcard's.

use std::net::SocketAddr;

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, PostcardCodec, State};

use super::MemberId;

/// The longest postcard varint of a `u128`: 19 bytes.
const VARINT_MAX: usize = 19;
/// Longest postcard encoding of a [`MemberId`]: a 128-bit varint node id, an IPv6 socket
/// address (variant, 16 octets, 16-bit varint port) and a 64-bit varint generation.
const MEMBER_ID_MAX: usize = VARINT_MAX + (1 + 16 + 3) + 10;
/// Longest header: two identities, an incarnation, and the message carrying a third one.
const HEADER_MAX: usize = MEMBER_ID_MAX + 3 + MEMBER_ID_MAX + (1 + MEMBER_ID_MAX + 1);
/// Longest member: an identity, an incarnation and a state.
const MEMBER_MAX: usize = MEMBER_ID_MAX + 3 + 1;

/// Encodes as `foca::PostcardCodec` does, faster; decodes with it. Keeps the encoding of the
/// last header's sender: every header a node sends names it as the sender, and encoding that
/// same identity again for every datagram was a third of encoding a header.
#[derive(Debug, Clone, Default)]
pub(crate) struct SwimCodec {
    sender: Option<(MemberId, Scratch<MEMBER_ID_MAX>)>,
}

impl Codec<MemberId> for SwimCodec {
    // Postcard's, so decoding can delegate and callers see one error type.
    type Error = postcard::Error;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        // A new life or address renames us: the next header encodes it afresh.
        if self
            .sender
            .as_ref()
            .is_some_and(|(id, _)| *id != header.src)
        {
            self.sender = None;
        }
        let (_, sender) = self.sender.get_or_insert_with(|| {
            let mut bytes = Scratch::new();
            bytes.member_id(&header.src);
            (header.src, bytes)
        });
        let mut out = Scratch::<HEADER_MAX>::new();
        out.raw(sender.written());
        out.after_sender(header);
        out.write_to(buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        PostcardCodec.decode_header(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        let mut out = Scratch::<MEMBER_MAX>::new();
        out.member_id(member.id());
        out.varint(member.incarnation().into());
        out.variant(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        out.write_to(buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        PostcardCodec.decode_member(buf)
    }
}

/// Appends `value` as postcard's varint to `out`: for the push-pull table's codec, whose node
/// ids are the same 19-byte varints as a header's.
pub(super) fn put_varint(out: &mut Vec<u8>, value: u128) {
    // Lengths, versions and ports: mostly one byte, not worth a scratch buffer.
    if value < 0x80 {
        return out.push(value as u8);
    }
    let mut scratch = Scratch::<VARINT_MAX>::new();
    scratch.varint(value);
    out.extend_from_slice(&scratch.bytes[..scratch.len]);
}

/// The low 56 bits of `value` seven to a byte, least significant first, each byte's top bit
/// clear: three mask-and-shift steps (28-bit halves, 14-bit quarters, 7-bit eighths) instead
/// of eight shifts and masks, one per byte.
fn spread_sevens(value: u64) -> u64 {
    let x = value & 0x00ff_ffff_ffff_ffff;
    let x = (x & 0x0000_0000_0fff_ffff) | (x & 0x00ff_ffff_f000_0000) << 4;
    let x = (x & 0x0000_3fff_0000_3fff) | (x & 0x0fff_c000_0fff_c000) << 2;
    (x & 0x007f_007f_007f_007f) | (x & 0x3f80_3f80_3f80_3f80) << 1
}

/// A fixed buffer sized for the longest encoding, so writes into it cannot overflow.
#[derive(Debug, Clone)]
struct Scratch<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Scratch<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Postcard's unsigned varint: seven bits a byte, least significant first.
    fn varint(&mut self, value: u128) {
        // A random node id takes 19 bytes, and shifting a u128 a byte at a time made most of a
        // header's encoding cost. Anything of 64 bits or more has at least ten bytes, so its
        // low 63 bits are nine bytes that all carry the continuation bit: one u64 spreads them.
        let mut rest = value;
        while rest > u128::from(u64::MAX) {
            self.group(rest as u64);
            rest >>= 63;
        }
        self.varint64(rest as u64);
    }

    /// The low 63 bits of `low` as nine continued varint bytes, eight of them in one write.
    fn group(&mut self, low: u64) {
        self.raw(&(spread_sevens(low) | 0x8080_8080_8080_8080).to_le_bytes());
        self.byte((low >> 56) as u8 | 0x80);
    }

    fn varint64(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte(value as u8 | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    /// Enum variant indices are varint `u32`s; ours are all below 128, hence one byte.
    fn variant(&mut self, index: u8) {
        self.varint(index.into());
    }

    fn written(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// A header's fields after its sender's identity.
    fn after_sender(&mut self, header: &Header<MemberId>) {
        self.varint(header.src_incarnation.into());
        self.member_id(&header.dst);
        self.message(&header.message);
    }

    fn member_id(&mut self, id: &MemberId) {
        self.varint(id.node.as_u128());
        match id.addr {
            // Serde's compact form keeps only ip and port: flow info and scope id are not sent.
            SocketAddr::V4(addr) => {
                self.variant(0);
                self.raw(&addr.ip().octets());
                self.varint(addr.port().into());
            }
            SocketAddr::V6(addr) => {
                self.variant(1);
                self.raw(&addr.ip().octets());
                self.varint(addr.port().into());
            }
        }
        self.varint(id.generation.into());
    }

    fn message(&mut self, message: &Message<MemberId>) {
        match message {
            Message::Ping(probe) => self.probe(0, None, *probe),
            Message::Ack(probe) => self.probe(1, None, *probe),
            Message::PingReq {
                target,
                probe_number,
            } => self.probe(2, Some(target), *probe_number),
            Message::IndirectPing {
                origin,
                probe_number,
            } => self.probe(3, Some(origin), *probe_number),
            Message::IndirectAck {
                target,
                probe_number,
            } => self.probe(4, Some(target), *probe_number),
            Message::ForwardedAck {
                origin,
                probe_number,
            } => self.probe(5, Some(origin), *probe_number),
            Message::Announce => self.variant(6),
            Message::Feed => self.variant(7),
            Message::Gossip => self.variant(8),
            Message::Broadcast => self.variant(9),
            Message::TurnUndead => self.variant(10),
        }
    }

    /// A probe message: its variant, the identity it names if any, and the probe number
    /// (a `u8`, which postcard writes raw).
    fn probe(&mut self, index: u8, about: Option<&MemberId>, probe: foca::ProbeNumber) {
        self.variant(index);
        if let Some(id) = about {
            self.member_id(id);
        }
        self.byte(probe);
    }

    /// One write, and none at all when it does not fit: foca's packet limit is the `BufMut`'s.
    fn write_to(&self, mut buf: impl BufMut) -> Result<(), postcard::Error> {
        if buf.remaining_mut() < self.len {
            return Err(postcard::Error::SerializeBufferFull);
        }
        buf.put_slice(self.written());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spread puts bit `7 × k + j` of the value at bit `8 × k + j`, for every bit below 56.
    #[test]
    fn spreading_sevens_moves_each_bit_where_the_byte_loop_did() {
        for bit in 0..64 {
            let expected = if bit < 56 {
                1u64 << (8 * (bit / 7) + bit % 7)
            } else {
                0
            };
            assert_eq!(spread_sevens(1 << bit), expected, "bit {bit}");
        }
        let mut x: u64 = 7;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let looped = (0..8).fold(0, |word, byte| {
                word | (x >> (7 * byte) & 0x7f) << (8 * byte)
            });
            assert_eq!(spread_sevens(x), looped);
        }
    }
    use crate::NodeId;
    use bytes::BufMut;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    /// Deterministic stream of test values (splitmix64).
    struct Values(u64);

    impl Values {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Mostly values at varint length boundaries and extremes, sometimes any value.
        fn number(&mut self, bits: u32) -> u128 {
            let max = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            let raw = (u128::from(self.next()) << 64) | u128::from(self.next());
            match self.next() % 4 {
                0 => raw & max,
                1 => {
                    let shift = (self.next() % u64::from(bits)) as u32;
                    (1u128 << shift).wrapping_sub((self.next() % 2) as u128) & max
                }
                2 => max,
                _ => raw & 0xff & max,
            }
        }

        fn member_id(&mut self) -> MemberId {
            let port = self.number(16) as u16;
            let addr = if self.next().is_multiple_of(2) {
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(self.number(32) as u32),
                    port,
                ))
            } else {
                // Flow info and scope id stay zero: postcard does not carry them.
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(self.number(128)),
                    port,
                    0,
                    0,
                ))
            };
            MemberId {
                node: NodeId::from_u128(self.number(128)),
                addr,
                generation: self.number(64) as u64,
            }
        }

        fn message(&mut self, kind: u64) -> Message<MemberId> {
            let probe_number = self.number(8) as u8;
            let id = self.member_id();
            match kind % 11 {
                0 => Message::Ping(probe_number),
                1 => Message::Ack(probe_number),
                2 => Message::PingReq {
                    target: id,
                    probe_number,
                },
                3 => Message::IndirectPing {
                    origin: id,
                    probe_number,
                },
                4 => Message::IndirectAck {
                    target: id,
                    probe_number,
                },
                5 => Message::ForwardedAck {
                    origin: id,
                    probe_number,
                },
                6 => Message::Announce,
                7 => Message::Feed,
                8 => Message::Gossip,
                9 => Message::Broadcast,
                _ => Message::TurnUndead,
            }
        }

        fn header(&mut self, kind: u64) -> Header<MemberId> {
            Header {
                src: self.member_id(),
                src_incarnation: self.number(16) as u16,
                dst: self.member_id(),
                message: self.message(kind),
            }
        }

        fn member(&mut self) -> Member<MemberId> {
            let state = match self.next() % 3 {
                0 => State::Alive,
                1 => State::Suspect,
                _ => State::Down,
            };
            Member::new(self.member_id(), self.number(16) as u16, state)
        }
    }

    #[test]
    fn headers_encode_as_postcard_does_and_decode_back() {
        let mut values = Values(22);
        for round in 0..20_000 {
            let header = values.header(round);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            SwimCodec::default()
                .encode_header(&header, &mut ours)
                .unwrap();
            PostcardCodec.encode_header(&header, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{header:?}");
            let mut read = &ours[..];
            assert_eq!(
                SwimCodec::default().decode_header(&mut read).unwrap(),
                header
            );
            assert!(read.is_empty());
        }
    }

    /// A codec that kept a sender writes what a fresh one does, whether the sender is the one
    /// it kept or not.
    #[test]
    fn headers_with_a_kept_sender_encode_as_without() {
        let mut values = Values(5);
        let senders: Vec<MemberId> = (0..3).map(|_| values.member_id()).collect();
        let mut kept = SwimCodec::default();
        for round in 0..2_000u64 {
            let mut header = values.header(round);
            if round % 7 != 0 {
                header.src = senders[(round / 50) as usize % senders.len()];
            }
            let (mut ours, mut plain) = (Vec::new(), Vec::new());
            kept.encode_header(&header, &mut ours).unwrap();
            SwimCodec::default()
                .encode_header(&header, &mut plain)
                .unwrap();
            assert_eq!(ours, plain, "{header:?}");
        }
    }

    #[test]
    fn members_encode_as_postcard_does_and_decode_back() {
        let mut values = Values(7);
        for _ in 0..20_000 {
            let member = values.member();
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            SwimCodec::default()
                .encode_member(&member, &mut ours)
                .unwrap();
            PostcardCodec.encode_member(&member, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{member:?}");
            let mut read = &ours[..];
            assert_eq!(
                SwimCodec::default().decode_member(&mut read).unwrap(),
                member
            );
            assert!(read.is_empty());
        }
    }

    /// Every length of varint, at both ends of its range and in between, as postcard writes it.
    #[test]
    fn varints_of_every_length_are_postcards() {
        let mut values = Values(11);
        for bits in 0..=128u32 {
            let top = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            let low = top >> 1;
            let between = low | (u128::from(values.next()) << 64 | u128::from(values.next())) & top;
            for value in [top, low, low + 1, between] {
                let mut ours = Vec::new();
                put_varint(&mut ours, value);
                assert_eq!(ours, postcard::to_allocvec(&value).unwrap(), "{value:#x}");
            }
        }
    }

    #[test]
    fn the_largest_encodings_fit_the_scratch_buffers() {
        let widest = MemberId {
            node: NodeId::from_u128(u128::MAX),
            addr: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(u128::MAX), u16::MAX, 0, 0)),
            generation: u64::MAX,
        };
        let header = Header {
            src: widest,
            src_incarnation: u16::MAX,
            dst: widest,
            message: Message::PingReq {
                target: widest,
                probe_number: u8::MAX,
            },
        };
        let mut bytes = Vec::new();
        SwimCodec::default()
            .encode_header(&header, &mut bytes)
            .unwrap();
        assert_eq!(bytes.len(), HEADER_MAX);
        bytes.clear();
        let member = Member::new(widest, u16::MAX, State::Down);
        SwimCodec::default()
            .encode_member(&member, &mut bytes)
            .unwrap();
        assert_eq!(bytes.len(), MEMBER_MAX);
    }

    #[test]
    fn what_does_not_fit_is_refused_and_nothing_is_written() {
        let mut values = Values(3);
        let header = values.header(2);
        let mut full = Vec::new();
        SwimCodec::default()
            .encode_header(&header, &mut full)
            .unwrap();
        let mut backing = vec![0xaa; full.len() - 1];
        let mut short = &mut backing[..];
        assert!(SwimCodec::default()
            .encode_header(&header, &mut short)
            .is_err());
        assert_eq!(short.remaining_mut(), full.len() - 1);
        assert!(backing.iter().all(|&b| b == 0xaa));

        let member = values.member();
        let mut limited = Vec::new().limit(3);
        assert!(SwimCodec::default()
            .encode_member(&member, &mut limited)
            .is_err());
        assert!(limited.get_ref().is_empty());
    }
}
