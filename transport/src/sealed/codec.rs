//! The sealed datagram's bytes: sealing, parsing, opening, and the replay window.
//!
//! ```text
//!   sealed:  0x5A | key id (4, BE) | counter (8, BE) | ChaCha20-Poly1305(payload) | tag (16)
//!   notice:  0x5B | key id (4, BE)          "I hold no key with this id: use QUIC"
//! ```
//!
//! The first 13 bytes are the AEAD's associated data, so the key id and counter cannot be
//! changed without the tag failing. The nonce is the counter (4 zero bytes, then the counter):
//! each key seals in one direction only and its counter only grows, so no (key, nonce) pair is
//! used twice. Nothing here panics on received bytes.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

/// First byte of a sealed membership datagram.
pub const SEALED_TYPE: u8 = 0x5A;
/// First byte of an "unknown key" notice.
pub const NOTICE_TYPE: u8 = 0x5B;
/// Bytes before the ciphertext: type, key id, counter.
pub const HEADER_LEN: usize = 1 + 4 + 8;
/// Bytes of the AEAD tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Bytes of a notice.
pub const NOTICE_LEN: usize = 5;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// How far behind the highest counter seen a datagram may arrive and still be taken once.
pub const REPLAY_WINDOW: u64 = 64;

/// Why received bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// Too short, an unknown type byte, or a notice of the wrong length.
    #[error("malformed sealed datagram")]
    Malformed,
    /// No receive key with this id.
    #[error("no key with id {0:#010x}")]
    UnknownKey(u32),
    /// The tag did not verify: tampered, or sealed with another key of the same id.
    #[error("tag does not verify")]
    BadTag,
    /// A counter already taken, or too old to tell.
    #[error("replayed or too old")]
    Replay,
    /// The payload is larger than the membership limit.
    #[error("payload over the membership limit")]
    Oversized,
}

impl SealedError {
    /// The metrics label of this refusal.
    pub fn label(self) -> &'static str {
        match self {
            SealedError::Malformed => "malformed",
            SealedError::UnknownKey(_) => "unknown_key",
            SealedError::BadTag => "bad_tag",
            SealedError::Replay => "replay",
            SealedError::Oversized => "oversized",
        }
    }
}

/// What a received packet claims to be, before any key is tried.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A sealed datagram: the whole packet, with its key id and counter read from the header.
    Sealed {
        /// Which of the receiver's keys sealed it.
        key_id: u32,
        /// The sender's counter (the nonce).
        counter: u64,
        /// The whole packet (header, ciphertext, tag).
        bytes: &'a [u8],
    },
    /// The sender holds no key with this id.
    Notice {
        /// The key id it does not know.
        key_id: u32,
    },
}

/// Reads the header of a received packet.
pub fn parse(bytes: &[u8]) -> Result<Packet<'_>, SealedError> {
    let (&kind, rest) = bytes.split_first().ok_or(SealedError::Malformed)?;
    let key_id = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(SealedError::Malformed)?;
    match kind {
        NOTICE_TYPE if bytes.len() == NOTICE_LEN => Ok(Packet::Notice { key_id }),
        SEALED_TYPE if bytes.len() >= OVERHEAD => {
            let counter = rest
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or(SealedError::Malformed)?;
            Ok(Packet::Sealed {
                key_id,
                counter,
                bytes,
            })
        }
        _ => Err(SealedError::Malformed),
    }
}

/// The notice telling a sender that no key `key_id` is held here.
pub fn notice(key_id: u32) -> [u8; NOTICE_LEN] {
    let id = key_id.to_be_bytes();
    [NOTICE_TYPE, id[0], id[1], id[2], id[3]]
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // CHACHA20_POLY1305 takes exactly KEY_LEN bytes, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key"))
}

fn nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// One direction's sealing key, its id and its counter.
pub struct SealingKey {
    id: u32,
    key: LessSafeKey,
    next: u64,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// A key that seals under `id`, its counter at 0.
    pub fn new(id: u32, bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            id,
            key: aead_key(bytes),
            next: 0,
        }
    }

    /// A key that seals under `id` from counter `next` on: for checks that seal a payload
    /// again at the counter a packet carries. Resuming a key that already sealed at `next`
    /// reuses its nonces.
    pub fn resume(id: u32, bytes: &[u8; KEY_LEN], next: u64) -> Self {
        Self {
            next,
            ..Self::new(id, bytes)
        }
    }

    /// The id the receiver knows this key by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Seals `payload` under the next counter. `None` once the counter is spent (after 2^64
    /// datagrams: never in practice, but a nonce is never reused).
    pub fn seal(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let counter = self.next;
        self.next = counter.checked_add(1)?;
        self.seal_at(counter, payload)
    }

    /// Seals `payload` under `counter`, whatever the key's own counter says.
    fn seal_at(&self, counter: u64, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(OVERHEAD + payload.len());
        out.push(SEALED_TYPE);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(payload);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*header), body)
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }
}

/// One direction's opening key and its replay window.
pub struct OpeningKey {
    key: LessSafeKey,
    window: ReplayWindow,
}

impl std::fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningKey")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl OpeningKey {
    /// A key that opens what the matching [`SealingKey`] sealed.
    pub fn new(bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            key: aead_key(bytes),
            window: ReplayWindow::default(),
        }
    }

    /// Opens a sealed packet whose header [`parse`] read, returning its payload. The replay
    /// window moves only once the tag verified, so forged packets cannot shift it.
    pub fn open(
        &mut self,
        counter: u64,
        packet: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, SealedError> {
        if packet.len() < OVERHEAD {
            return Err(SealedError::Malformed);
        }
        if packet.len() - OVERHEAD > max {
            return Err(SealedError::Oversized);
        }
        if !self.window.fresh(counter) {
            return Err(SealedError::Replay);
        }
        let (header, body) = packet.split_at(HEADER_LEN);
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce(counter), Aad::from(header), &mut body)
            .map_err(|_| SealedError::BadTag)?;
        let len = plain.len();
        self.window.take(counter);
        body.truncate(len);
        Ok(body)
    }
}

/// Which counters were taken: the highest, and a bitmap of the [`REPLAY_WINDOW`] below it
/// (the sliding window of IPsec and DTLS). Datagrams may arrive out of order; each counter is
/// taken at most once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One more than the highest counter taken; 0 before the first.
    top: u64,
    /// Bit `i` set: counter `top - 1 - i` was taken.
    seen: u64,
}

impl ReplayWindow {
    /// Whether `counter` may still be taken. Never `u64::MAX`: no sealer uses it (its counter
    /// would have nowhere to go after it), and taking it would overflow `top`, so only a peer
    /// sealing by hand sends it.
    pub fn fresh(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.top {
            return true;
        }
        let behind = self.top - 1 - counter;
        behind < REPLAY_WINDOW && self.seen & (1 << behind) == 0
    }

    /// Marks `counter` taken (after [`fresh`](Self::fresh) said it may be).
    pub fn take(&mut self, counter: u64) {
        if counter >= self.top {
            let shift = counter - self.top + 1;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = counter + 1; // `fresh` refused u64::MAX
        } else {
            self.seen |= 1 << (self.top - 1 - counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SealingKey, OpeningKey) {
        let bytes = [7u8; KEY_LEN];
        (SealingKey::new(0xABCD, &bytes), OpeningKey::new(&bytes))
    }

    fn open(key: &mut OpeningKey, packet: &[u8]) -> Result<Vec<u8>, SealedError> {
        match parse(packet)? {
            Packet::Sealed { counter, bytes, .. } => key.open(counter, bytes, 1200),
            Packet::Notice { .. } => Err(SealedError::Malformed),
        }
    }

    #[test]
    fn sealed_opens_once() {
        let (mut seal, mut open_key) = pair();
        let packet = seal.seal(b"ping").unwrap();
        assert_eq!(packet.len(), 4 + OVERHEAD);
        assert_eq!(open(&mut open_key, &packet).unwrap(), b"ping");
        assert_eq!(open(&mut open_key, &packet), Err(SealedError::Replay));
    }

    #[test]
    fn tampering_anywhere_fails() {
        let (mut seal, _) = pair();
        let packet = seal.seal(b"membership").unwrap();
        for i in 0..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x01;
            let mut key = OpeningKey::new(&[7u8; KEY_LEN]);
            assert!(open(&mut key, &bad).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn another_key_fails() {
        let (mut seal, _) = pair();
        let mut other = OpeningKey::new(&[8u8; KEY_LEN]);
        let packet = seal.seal(b"x").unwrap();
        assert_eq!(open(&mut other, &packet), Err(SealedError::BadTag));
    }

    #[test]
    fn out_of_order_within_the_window_is_taken_once() {
        let (mut seal, mut open_key) = pair();
        let packets: Vec<_> = (0..100).map(|_| seal.seal(b"p").unwrap()).collect();
        assert!(open(&mut open_key, &packets[99]).is_ok());
        assert!(open(&mut open_key, &packets[50]).is_ok());
        assert_eq!(open(&mut open_key, &packets[50]), Err(SealedError::Replay));
        // 99 - 35 = 64 behind: outside the window.
        assert_eq!(open(&mut open_key, &packets[35]), Err(SealedError::Replay));
        assert!(open(&mut open_key, &packets[36]).is_ok());
    }

    /// A peer holding the key can seal at any counter by hand. At `u64::MAX`, taking it
    /// overflowed the window's arithmetic (the shift to it): a panic in a debug build, and in
    /// release a window whose top stopped at `u64::MAX`, so that packet opened again on every
    /// replay.
    #[test]
    fn the_last_counter_is_refused_and_the_window_goes_on() {
        let (mut seal, mut open_key) = pair();
        let last = seal.seal_at(u64::MAX, b"last").unwrap();
        assert_eq!(open(&mut open_key, &last), Err(SealedError::Replay));
        assert!(open(&mut open_key, &seal.seal(b"first").unwrap()).is_ok());
        assert_eq!(open(&mut open_key, &last), Err(SealedError::Replay));
        assert!(open(&mut open_key, &seal.seal(b"next").unwrap()).is_ok());
        let below = seal.seal_at(u64::MAX - 1, b"below").unwrap();
        assert!(open(&mut open_key, &below).is_ok());
        assert_eq!(open(&mut open_key, &below), Err(SealedError::Replay));
    }

    #[test]
    fn headers_parse_strictly() {
        assert_eq!(parse(&[]), Err(SealedError::Malformed));
        assert_eq!(parse(&notice(9)), Ok(Packet::Notice { key_id: 9 }));
        assert_eq!(
            parse(&[NOTICE_TYPE, 0, 0, 0, 9, 0]),
            Err(SealedError::Malformed)
        );
        assert_eq!(
            parse(&[SEALED_TYPE; OVERHEAD - 1]),
            Err(SealedError::Malformed)
        );
        assert_eq!(parse(&[0x40; 40]), Err(SealedError::Malformed));
    }

    #[test]
    fn oversized_payloads_are_refused_before_opening() {
        let (mut seal, mut open_key) = pair();
        let packet = seal.seal(&[1u8; 100]).unwrap();
        let Ok(Packet::Sealed { counter, bytes, .. }) = parse(&packet) else {
            panic!("a sealed packet")
        };
        assert_eq!(
            open_key.open(counter, bytes, 99),
            Err(SealedError::Oversized)
        );
    }
}
