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
        self.buffer.clear();
        // Writing into a String cannot fail.
        let _ = self.buffer.write_fmt(args);
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
