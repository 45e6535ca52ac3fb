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

/// The text of a trace line being written by [`Trace::line_with`]: bytes rather than a
/// `String`, so a number goes in without the UTF-8 check a `&str` of its digits would need.
/// Only `&str`s and ASCII digits go in, so the bytes are always UTF-8.
#[derive(Debug, Default)]
pub struct LineText(Vec<u8>, Option<(u64, StampText)>);

impl LineText {
    /// Appends `text`.
    pub fn push_str(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    /// Appends `n` in decimal, as `{n}` would.
    pub fn push_decimal(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.0.extend_from_slice(decimal(n, &mut digits));
    }

    /// Appends world microseconds as seconds with six decimals, as `{}.{:06}` of the seconds
    /// and the microseconds would (every trace line starts with one).
    /// The last stamp's text is kept: the lines of one instant (a forming cluster's member
    /// events come in bursts) share it, and formatting it is most of a short line's cost.
    pub fn push_stamp(&mut self, us: u64) {
        let stamp = match self.1 {
            Some((at, stamp)) if at == us => stamp,
            _ => self.1.insert((us, StampText::of(us))).1,
        };
        self.0.extend_from_slice(stamp.as_bytes());
    }

    /// The text (lossless: only `&str`s and ASCII digits went in).
    fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// For [`Trace::line`]'s `fmt` arguments.
impl Write for LineText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

/// Writes world microseconds as [`LineText::push_stamp`] appends them.
pub fn write_stamp(out: &mut impl Write, us: u64) -> fmt::Result {
    out.write_str(ascii(StampText::of(us).as_bytes()))
}

/// World microseconds as seconds with six decimals, as `{}.{:06}` of the seconds and the
/// microseconds would write them: what both stamp writers put out.
#[derive(Clone, Copy, Debug)]
struct StampText {
    /// Up to 20 digits of seconds, the point and six digits.
    bytes: [u8; 27],
    len: usize,
}

impl StampText {
    fn of(us: u64) -> Self {
        let mut digits = [0u8; 20];
        let seconds = decimal(us / 1_000_000, &mut digits);
        let mut bytes = [0u8; 27];
        let point = seconds.len();
        bytes[..point].copy_from_slice(seconds);
        bytes[point] = b'.';
        bytes[point + 1..point + 7].copy_from_slice(&six_digits(us % 1_000_000));
        Self {
            bytes,
            len: point + 7,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The microseconds of a second (below a million) as six digits, leading zeros kept.
fn six_digits(micros: u64) -> [u8; 6] {
    let mut digits = [0u8; 6];
    let pairs = [micros / 10_000, micros / 100 % 100, micros % 100];
    for (at, pair) in pairs.into_iter().enumerate() {
        let pair = pair as usize * 2;
        digits[at * 2..at * 2 + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    digits
}

/// Digits as a `&str`.
fn ascii(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

/// "00" to "99": decimals are written two digits a step (half the divisions).
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `n` in decimal, written at the end of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    while n >= 10 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    // The first digit of an odd count, or the "0" of zero.
    if n > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    &digits[at..]
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
    text: LineText,
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
        // Writing into a LineText cannot fail.
        self.line_with(|text| {
            let _ = text.write_fmt(args);
        });
    }

    /// Appends the line `write` puts into the (cleared) text it is handed: the frequent
    /// lines push their text and numbers without `fmt`'s machinery, and hash exactly as
    /// [`Trace::line`] would the same text.
    pub fn line_with(&mut self, write: impl FnOnce(&mut LineText)) {
        self.text.0.clear();
        write(&mut self.text);
        let line = Fnv64::of(&self.text.0);
        self.push_line(line);
        if let Some(kept) = &mut self.kept {
            kept.push(self.text.to_text());
        }
    }

    /// Folds a line's hash into the trace's.
    fn push_line(&mut self, line: u64) {
        // Chained word-wise hashes of whole lines: order-sensitive, and eight times fewer
        // multiplications than hashing byte by byte (the trace is on every event's path).
        self.hash.write(&line.to_le_bytes());
        self.lines += 1;
    }

    /// Appends one line known by `words`: the hash takes the words, not the text, so the
    /// hot paths (every send, receive and wake-up) format nothing unless lines are kept (nor
    /// build the arguments: `text` is called only then). Two runs still hash alike exactly
    /// when their words do; `words` must say everything `text` shows, and start with a tag
    /// that no other caller uses. Inlined with the count known, the fold runs unrolled.
    #[inline]
    pub fn words<const N: usize>(&mut self, words: &[u64; N], text: impl FnOnce() -> String) {
        let mut line = Fnv64::OFFSET ^ (N as u64) << 56;
        for &word in words {
            line = (line ^ word).wrapping_mul(Fnv64::PRIME);
        }
        self.push_line(line);
        if let Some(kept) = &mut self.kept {
            kept.push(text());
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
        let mut numbers = vec![0, 7, 10, 99, 100, 123_456, 1_000_000, 40_000_001, u64::MAX];
        numbers.extend((0..20).map(|digits| 10u64.pow(digits) - 1));
        numbers.extend((0..20).map(|digits| 10u64.pow(digits)));
        for n in numbers {
            let mut text = LineText::default();
            text.push_decimal(n);
            assert_eq!(text.to_text(), format!("{n}"));
            let mut text = LineText::default();
            text.push_stamp(n);
            let stamp = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
            assert_eq!(text.to_text(), stamp);
            let mut written = String::new();
            write_stamp(&mut written, n).unwrap();
            assert_eq!(written, stamp);
        }
        let mut a = Trace::new(false);
        a.line(format_args!("{} n{} up", 12, 3));
        let mut b = Trace::new(false);
        let mut c = Trace::new(true);
        for trace in [&mut b, &mut c] {
            trace.line_with(|text| {
                text.push_decimal(12);
                text.push_str(" n");
                text.push_decimal(3);
                text.push_str(" up");
            });
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(c.hash(), b.hash());
        assert_eq!(c.take_lines().unwrap(), vec!["12 n3 up"]);
    }

    #[test]
    fn word_lines_hash_the_same_kept_or_not_and_differ_by_any_word() {
        let mut kept = Trace::new(true);
        let mut bare = Trace::new(false);
        for trace in [&mut kept, &mut bare] {
            trace.words(&[1, 2, 3], || "one two three".into());
        }
        assert_eq!(kept.hash(), bare.hash());
        assert_eq!(kept.take_lines().unwrap(), vec!["one two three"]);
        let mut other = Trace::new(false);
        other.words(&[1, 2, 4], || "one two three".into());
        assert_ne!(other.hash(), bare.hash());
    }
}
