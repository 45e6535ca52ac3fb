//! The push-pull table's own codec: byte for byte postcard's encoding of
//! `CoreMessage::Membership(MembershipMessage::PushPull { .. })`, without serde.
//!
//! A push-pull carries a member and a metadata entry per node, and at a mass join every node
//! exchanges its table once per probe period: through serde, each entry was a chain of
//! visitors, a byte-at-a-time varint reader checking its input per byte, and a `Vec` of cloned
//! members and metadata built only to be serialized — a fifth of the join's instructions.
//! Here the table is written straight from borrowed entries and read from a slice.
//!
//! The layout must stay postcard's (peers running older builds read and write it with
//! postcard): varint integers (a node id is a `u128` varint), fields in declaration order,
//! enum variants and lengths as varints, `Option` and `bool` as a byte, IP octets raw, serde's
//! compact socket address (no flow info or scope id). Decoding accepts exactly what postcard
//! accepts and refuses the rest; the tests check both directions against postcard, and every
//! truncation and byte change of encoded tables.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use foca::{Codec, Member, State};
use postcard::Error;

use super::decoded;
use super::metadata::{NodeMetadata, Versioned};
use super::swim_codec::{put_varint, SwimCodec};
use super::wire::MembershipMessage;
use super::MemberId;
use crate::NodeId;

/// The envelope's tag and `MembershipMessage::PushPull`'s variant index, as postcard writes
/// them (one-byte varints).
const PREFIX: [u8; 2] = [crate::envelope::MEMBERSHIP, 0];

/// Bits of the integers the table holds, for their varints' length limits.
const U16: u32 = 16;
const U32: u32 = 32;
const U64: u32 = 64;
const U128: u32 = 128;

/// Encodes a push-pull of `members`, `metadata` and `reply` as [`super::encode`] encodes the
/// equal [`MembershipMessage::PushPull`].
pub(super) fn encode(
    members: &[&Member<MemberId>],
    metadata: &[(NodeId, &Versioned)],
    reply: bool,
) -> Bytes {
    // Typical sizes (a random node id is 19 bytes): one allocation for most tables.
    let mut out = Vec::with_capacity(PREFIX.len() + 8 + members.len() * 32 + metadata.len() * 48);
    out.extend_from_slice(&PREFIX);
    put_varint(&mut out, members.len() as u128);
    for member in members {
        // Writing into a `Vec` cannot run out of room: the codec's only error.
        let _ = SwimCodec::default().encode_member(member, &mut out);
    }
    put_varint(&mut out, metadata.len() as u128);
    for (node, versioned) in metadata {
        put_varint(&mut out, node.as_u128());
        put_varint(&mut out, versioned.version.into());
        put_metadata(&mut out, &versioned.metadata);
    }
    out.push(u8::from(reply));
    crate::envelope::finish(out)
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u128);
    out.extend_from_slice(text.as_bytes());
}

fn put_metadata(out: &mut Vec<u8>, metadata: &NodeMetadata) {
    match &metadata.name {
        Some(name) => {
            out.push(1);
            put_str(out, name);
        }
        None => out.push(0),
    }
    put_varint(out, metadata.tags.len() as u128);
    for (key, value) in &metadata.tags {
        put_str(out, key);
        put_str(out, value);
    }
    put_str(out, &metadata.version);
    match &metadata.http {
        // Rare (a node serving HTTP tells where): serde's own form of the address. Encoding
        // an address into a `Vec` cannot fail.
        Some(http) => out.extend(postcard::to_stdvec(&Some(http)).unwrap_or_default()),
        None => out.push(0),
    }
}

/// A push-pull decoded from a stream payload (the envelope's tag included), if the payload
/// is one; anything else is left to postcard's decoding of the whole `CoreMessage`. The
/// result is what postcard's decoding would give: the message, or an error where it fails.
pub fn decode_push_pull(payload: &[u8]) -> Option<Result<MembershipMessage, Error>> {
    let body = payload.strip_prefix(&PREFIX)?;
    Some(Reader(body).push_pull())
}

/// What is left of the input, read from the front.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn push_pull(&mut self) -> Result<MembershipMessage, Error> {
        let members = self.seq(Self::member)?;
        let metadata = self.seq(|r| Ok((NodeId::from_u128(r.varint(U128)?), r.versioned()?)))?;
        let reply = match self.byte()? {
            0 => false,
            1 => true,
            _ => return Err(Error::DeserializeBadBool),
        };
        Ok(MembershipMessage::PushPull {
            members,
            metadata,
            reply,
        })
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let (&first, rest) = self
            .0
            .split_first()
            .ok_or(Error::DeserializeUnexpectedEnd)?;
        self.0 = rest;
        Ok(first)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if len > self.0.len() {
            return Err(Error::DeserializeUnexpectedEnd);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    /// Postcard's varint of a `bits`-bit integer: at most as many bytes as it takes seven bits
    /// at a time, the last holding only the bits left (non-minimal encodings are accepted, as
    /// postcard accepts them).
    fn varint(&mut self, bits: u32) -> Result<u128, Error> {
        let most = bits.div_ceil(7);
        let mut value = 0u128;
        for at in 0..most {
            let byte = self.byte()?;
            value |= u128::from(byte & 0x7f) << (7 * at);
            if byte & 0x80 == 0 {
                let last_max = (1u8 << (bits % 7)) - 1;
                if at == most - 1 && byte > last_max {
                    return Err(Error::DeserializeBadVarint);
                }
                return Ok(value);
            }
        }
        Err(Error::DeserializeBadVarint)
    }

    /// A varint that fits `T` by its length limit.
    fn number<T: TryFrom<u128>>(&mut self, bits: u32) -> Result<T, Error> {
        T::try_from(self.varint(bits)?).map_err(|_| Error::DeserializeBadVarint)
    }

    /// A sequence's length, then its elements. Room is reserved for no more elements than
    /// bytes are left (each takes one at least), so a forged length allocates nothing.
    fn seq<T>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let len: usize = self.number(U64)?;
        let mut out = Vec::with_capacity(len.min(self.0.len()));
        for _ in 0..len {
            out.push(element(self)?);
        }
        Ok(out)
    }

    fn variant(&mut self, variants: u32) -> Result<u32, Error> {
        let index: u32 = self.number(U32)?;
        if index >= variants {
            return Err(Error::SerdeDeCustom);
        }
        Ok(index)
    }

    fn member(&mut self) -> Result<Member<MemberId>, Error> {
        let id = MemberId {
            node: NodeId::from_u128(self.varint(U128)?),
            addr: self.socket_addr()?,
            generation: self.number(U64)?,
        };
        let incarnation = self.number(U16)?;
        let state = match self.variant(3)? {
            0 => State::Alive,
            1 => State::Suspect,
            _ => State::Down,
        };
        Ok(Member::new(id, incarnation, state))
    }

    fn socket_addr(&mut self) -> Result<SocketAddr, Error> {
        Ok(if self.variant(2)? == 0 {
            let octets: [u8; 4] = self.octets()?;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(octets), self.number(U16)?))
        } else {
            let octets: [u8; 16] = self.octets()?;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                self.number(U16)?,
                0,
                0,
            ))
        })
    }

    fn octets<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut octets = [0; N];
        octets.copy_from_slice(self.take(N)?);
        Ok(octets)
    }

    fn option<T>(
        &mut self,
        some: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        match self.byte()? {
            0 => Ok(None),
            1 => some(self).map(Some),
            _ => Err(Error::DeserializeBadOption),
        }
    }

    fn str(&mut self) -> Result<&'a str, Error> {
        let len = self.number(U64)?;
        std::str::from_utf8(self.take(len)?).map_err(|_| Error::DeserializeBadUtf8)
    }

    /// A string's bytes, unchecked: for [`Reader::skip_metadata`].
    fn skip_str(&mut self) -> Result<(), Error> {
        let len = self.number(U64)?;
        self.take(len).map(drop)
    }

    fn versioned(&mut self) -> Result<Versioned, Error> {
        let version = self.number(U64)?;
        let start = self.0;
        self.skip_metadata()?;
        let encoded = &start[..start.len() - self.0.len()];
        // Most entries are values decoded lately (every push-pull lists every node's): bytes
        // equal to a value's encoding are that value, valid, and need no decoding.
        let metadata = decoded::remembered(encoded, |_| true, || Reader(encoded).metadata())?;
        Ok(Versioned { version, metadata })
    }

    /// Steps over a [`NodeMetadata`], reading only its lengths and tags.
    fn skip_metadata(&mut self) -> Result<(), Error> {
        self.option(Self::skip_str)?;
        let tags: usize = self.number(U64)?;
        for _ in 0..tags {
            self.skip_str()?;
            self.skip_str()?;
        }
        self.skip_str()?;
        self.option(Self::socket_addr).map(drop)
    }

    fn metadata(&mut self) -> Result<NodeMetadata, Error> {
        let name = self.option(Self::str)?.map(str::to_owned);
        let tags_len: usize = self.number(U64)?;
        let mut tags = BTreeMap::new();
        for _ in 0..tags_len {
            // A repeated key keeps its last value, as a map decoded by serde does.
            tags.insert(self.str()?.to_owned(), self.str()?.to_owned());
        }
        Ok(NodeMetadata {
            name,
            tags,
            version: self.str()?.to_owned(),
            http: self.option(Self::socket_addr)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::CoreMessage;
    use rand10::rngs::StdRng;
    use rand10::{RngExt, SeedableRng};
    use std::sync::Arc;

    /// A number mostly at a varint length boundary or an extreme, sometimes any value.
    fn number(rng: &mut StdRng, bits: u32) -> u128 {
        let max = u128::MAX >> (128 - bits);
        match rng.random_range(0..4) {
            0 => max,
            1 => 0,
            2 => (1u128 << (7 * rng.random_range(0..bits.div_ceil(7)))).min(max),
            _ => rng.random::<u128>() & max,
        }
    }

    fn addr(rng: &mut StdRng) -> SocketAddr {
        let port = number(rng, U16) as u16;
        if rng.random_range(0..4) == 0 {
            SocketAddr::V6(SocketAddrV6::new(rng.random::<u128>().into(), port, 0, 0))
        } else {
            SocketAddr::V4(SocketAddrV4::new(rng.random::<u32>().into(), port))
        }
    }

    fn member(rng: &mut StdRng) -> Member<MemberId> {
        let id = MemberId {
            node: NodeId::from_u128(number(rng, U128)),
            addr: addr(rng),
            generation: number(rng, U64) as u64,
        };
        let state = [State::Alive, State::Suspect, State::Down][rng.random_range(0..3)];
        Member::new(id, number(rng, U16) as u16, state)
    }

    fn text(rng: &mut StdRng) -> String {
        let words = ["", "n7", "zone", "eu-1", "größe", "\"quoted\"", "sim"];
        words[rng.random_range(0..words.len())].repeat(rng.random_range(1..30))
    }

    fn versioned(rng: &mut StdRng) -> Versioned {
        let metadata = NodeMetadata {
            name: rng.random::<bool>().then(|| text(rng)),
            tags: (0..rng.random_range(0..3))
                .map(|_| (text(rng), text(rng)))
                .collect(),
            version: text(rng),
            http: rng.random::<bool>().then(|| addr(rng)),
        };
        Versioned {
            version: number(rng, U64) as u64,
            metadata: Arc::new(metadata),
        }
    }

    fn table(
        rng: &mut StdRng,
        most: usize,
    ) -> (Vec<Member<MemberId>>, Vec<(NodeId, Versioned)>, bool) {
        let members = (0..rng.random_range(0..most))
            .map(|_| member(rng))
            .collect();
        let metadata = (0..rng.random_range(0..most))
            .map(|_| (NodeId::from_u128(number(rng, U128)), versioned(rng)))
            .collect();
        (members, metadata, rng.random())
    }

    fn by_postcard(payload: &[u8]) -> Result<MembershipMessage, Error> {
        match postcard::from_bytes::<CoreMessage>(payload)? {
            CoreMessage::Membership(message) => Ok(message),
            _ => Err(Error::SerdeDeCustom),
        }
    }

    /// Tables of every kind of entry encode to postcard's bytes and decode to what postcard
    /// decodes from them.
    #[test]
    fn encodes_and_decodes_as_postcard() {
        let mut rng = StdRng::seed_from_u64(22);
        for _ in 0..500 {
            let (members, metadata, reply) = table(&mut rng, 20);
            let message = MembershipMessage::PushPull {
                members: members.clone(),
                metadata: metadata.clone(),
                reply,
            };
            let expected = super::super::encode(message.clone());
            let borrowed: Vec<_> = members.iter().collect();
            let entries: Vec<_> = metadata.iter().map(|(n, v)| (*n, v)).collect();
            assert_eq!(encode(&borrowed, &entries, reply), expected);
            let decoded = decode_push_pull(&expected).expect("a push-pull");
            assert_eq!(decoded, Ok(message));
        }
    }

    /// Whatever the bytes — every truncation and every change of one byte of encoded tables,
    /// and noise — the decoder refuses exactly what postcard refuses and otherwise decodes
    /// what postcard decodes.
    #[test]
    fn refuses_what_postcard_refuses() {
        let mut rng = StdRng::seed_from_u64(23);
        let agree = |payload: &[u8]| {
            let ours = decode_push_pull(payload).expect("a push-pull's prefix");
            match (ours, by_postcard(payload)) {
                (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{payload:?}"),
                (ours, theirs) => assert_eq!(ours.is_ok(), theirs.is_ok(), "{payload:?}"),
            }
        };
        for _ in 0..12 {
            let (members, metadata, reply) = table(&mut rng, 4);
            let bytes = super::super::encode(MembershipMessage::PushPull {
                members,
                metadata,
                reply,
            });
            for len in PREFIX.len()..bytes.len() {
                agree(&bytes[..len]);
            }
            for at in PREFIX.len()..bytes.len() {
                let mut changed = bytes.to_vec();
                for value in [0, 3, 0x80, 0xff, rng.random()] {
                    changed[at] = value;
                    agree(&changed);
                }
            }
        }
        for _ in 0..2_000 {
            let mut noise = PREFIX.to_vec();
            noise.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>() & 0x87));
            agree(&noise);
        }
    }

    /// Only a push-pull's prefix is taken; everything else is left to postcard.
    #[test]
    fn leaves_other_messages_to_postcard() {
        let digest = super::super::encode(MembershipMessage::Digest {
            from: *member(&mut StdRng::seed_from_u64(1)).id(),
            digest: 7,
        });
        assert!(decode_push_pull(&digest).is_none());
        assert!(decode_push_pull(&[]).is_none());
        assert!(decode_push_pull(&[crate::envelope::REPLICATION, 0]).is_none());
    }
}
