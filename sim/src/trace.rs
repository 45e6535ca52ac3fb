//! The run's trace: every input delivered to a core, every effect it emitted and every fault,
//! one line each, in order, folded into a hash. Two runs with the same seed must produce the same
//! hash; `--trace` also keeps the lines.

use std::fmt::{self, Write};

/// FNV-1a, 64 bits: tiny, stable across platforms and Rust versions (unlike `DefaultHasher`).
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Self::OFFSET)
    }

    /// Folds in `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// A hash of `bytes` that takes eight bytes per step (FNV-1a's scheme over 64-bit words):
    /// payloads are hashed on every send and receive, so this is on the simulator's hot path.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Self::OFFSET ^ bytes.len() as u64;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            h = (h ^ word).wrapping_mul(Self::PRIME);
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        (h ^ u64::from_le_bytes(tail)).wrapping_mul(Self::PRIME)
    }
}

/// Appends `n` in decimal, as `{n}` would.
pub fn push_decimal(text: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    text.push_str(decimal(n, &mut digits));
}

/// Appends world microseconds as seconds with six decimals, as `{}.{:06}` of the seconds
/// and the microseconds would (every trace line starts with one).
pub fn push_stamp(text: &mut String, us: u64) {
    // Writing into a String cannot fail.
    let _ = write_stamp(text, us);
}

/// Writes world microseconds as [`push_stamp`] appends them.
pub fn write_stamp(out: &mut impl Write, us: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    out.write_str(decimal(us / 1_000_000, &mut digits))?;
    let micros = decimal(us % 1_000_000, &mut digits);
    out.write_str(&".000000"[..7 - micros.len()])?;
    out.write_str(micros)
}

/// `n` in decimal, written at the end of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&digits[at..]).unwrap_or_default()
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

/// The trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    lines: u64,
    kept: Option<Vec<String>>,
    buffer: String,
}

impl Trace {
    /// A trace that hashes lines, and keeps them if `keep`.
    pub fn new(keep: bool) -> Self {
        Self {
            kept: keep.then(Vec::new),
            ..Self::default()
        }
    }

    /// Appends one line (without the newline).
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a String cannot fail.
        self.line_with(|buffer| {
            let _ = buffer.write_fmt(args);
        });
    }

    /// Appends the line `write` puts into the (cleared) buffer it is handed: the frequent
    /// lines push their text and numbers ([`push_decimal`]) without `fmt`'s machinery, and
    /// hash exactly as [`Trace::line`] would the same text.
    pub fn line_with(&mut self, write: impl FnOnce(&mut String)) {
        self.buffer.clear();
        write(&mut self.buffer);
        // Chained word-wise hashes of whole lines: order-sensitive, and eight times fewer
        // multiplications than hashing byte by byte (the trace is on every event's path).
        let line = Fnv64::of(self.buffer.as_bytes());
        self.hash.write(&line.to_le_bytes());
        self.lines += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(self.buffer.clone());
        }
    }

    /// Appends one line known by `words`: the hash takes the words, not the text, so the
    /// hot paths (every send, receive and wake-up) format nothing unless lines are kept. Two
    /// runs still hash alike exactly when their words do; `words` must say everything `args`
    /// shows, and start with a tag that no other caller uses.
    pub fn words(&mut self, words: &[u64], args: fmt::Arguments<'_>) {
        let mut line = Fnv64::OFFSET ^ (words.len() as u64) << 56;
        for &word in words {
            line = (line ^ word).wrapping_mul(Fnv64::PRIME);
        }
        self.hash.write(&line.to_le_bytes());
        self.lines += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(args.to_string());
        }
    }

    /// The hash of every line so far, as 16 hex digits.
    pub fn hash(&self) -> String {
        format!("{:016x}", self.hash.finish())
    }

    /// How many lines were traced.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// Whether nothing was traced.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The kept lines, if keeping was asked for.
    pub fn take_lines(&mut self) -> Option<Vec<String>> {
        self.kept.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_line_and_their_order() {
        let mut a = Trace::new(false);
        a.line(format_args!("one"));
        a.line(format_args!("two"));
        let mut b = Trace::new(true);
        b.line(format_args!("two"));
        b.line(format_args!("one"));
        assert_ne!(a.hash(), b.hash());
        assert_eq!(b.take_lines().unwrap(), vec!["two", "one"]);
        assert_ne!(Fnv64::of(b"abc"), Fnv64::of(b"abd"));
    }

    #[test]
    fn numbers_and_stamps_are_written_as_fmt_writes_them() {
        for n in [0, 7, 10, 99, 100, 123_456, 1_000_000, u64::MAX] {
            let mut text = String::new();
            push_decimal(&mut text, n);
            assert_eq!(text, format!("{n}"));
            text.clear();
            push_stamp(&mut text, n);
            assert_eq!(text, format!("{}.{:06}", n / 1_000_000, n % 1_000_000));
        }
        let mut a = Trace::new(false);
        a.line(format_args!("{} n{} up", 12, 3));
        let mut b = Trace::new(false);
        b.line_with(|text| {
            push_decimal(text, 12);
            text.push_str(" n");
            push_decimal(text, 3);
            text.push_str(" up");
        });
        assert_eq!(a.hash(), b.hash());
    }

    #[test]
    fn word_lines_hash_the_same_kept_or_not_and_differ_by_any_word() {
        let mut kept = Trace::new(true);
        let mut bare = Trace::new(false);
        for trace in [&mut kept, &mut bare] {
            trace.words(&[1, 2, 3], format_args!("one two three"));
        }
        assert_eq!(kept.hash(), bare.hash());
        assert_eq!(kept.take_lines().unwrap(), vec!["one two three"]);
        let mut other = Trace::new(false);
        other.words(&[1, 2, 4], format_args!("one two three"));
        assert_ne!(other.hash(), bare.hash());
    }
}
