//! W3C Trace Context: the `traceparent` header, and ids for new traces and spans.
//!
//! `traceparent` is `version-traceid-parentid-flags`, e.g.
//! `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`: lowercase hex only, trace and
//! parent ids never all zero, version `ff` forbidden. A version above `00` is parsed by its first
//! four fields, as the specification asks, so that newer senders still join our traces. We always
//! emit version `00`.
//!
//! Pure: ids come from a caller-supplied RNG. Carrying the current context across a task is the
//! runtime's job.

use std::fmt;
use std::str::FromStr;

use rand10::Rng;

/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// The `sampled` bit of the trace flags: the caller may have recorded this trace.
pub const FLAG_SAMPLED: u8 = 0x01;

/// Why a `traceparent` value was rejected. The remedy is always the same: ignore the header and
/// start a new trace with [`TraceContext::new_root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// Shorter than the 55 bytes every version needs.
    #[error("traceparent is {len} bytes, expected 55 (`00-<32 hex>-<16 hex>-<2 hex>`); start a new trace")]
    TooShort {
        /// Length of the value in bytes.
        len: usize,
    },
    /// A version-00 value with anything after the flags.
    #[error("traceparent version 00 must be exactly 55 bytes, got {len}; start a new trace")]
    TooLong {
        /// Length of the value in bytes.
        len: usize,
    },
    /// The version is not two lowercase hex digits, or is the forbidden `ff`.
    #[error(
        "traceparent version must be two lowercase hex digits other than `ff`; start a new trace"
    )]
    Version,
    /// A `-` was missing where the format needs one.
    #[error("traceparent needs `-` at byte {at}; start a new trace")]
    Separator {
        /// Byte offset where `-` was expected.
        at: usize,
    },
    /// The trace id is not 32 lowercase hex digits, or is all zero.
    #[error(
        "traceparent trace-id must be 32 lowercase hex digits, not all zero; start a new trace"
    )]
    TraceId,
    /// The parent id is not 16 lowercase hex digits, or is all zero.
    #[error(
        "traceparent parent-id must be 16 lowercase hex digits, not all zero; start a new trace"
    )]
    ParentId,
    /// The flags are not two lowercase hex digits.
    #[error("traceparent trace-flags must be two lowercase hex digits; start a new trace")]
    Flags,
}

/// Why bytes are not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("trace and span ids must not be all zero; generate one with TraceContext::new_root")]
pub struct ZeroId;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr, $array:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = $array, into = $array)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The id with these bytes, or `None` if they are all zero (which W3C forbids).
            pub fn from_bytes(bytes: [u8; $len]) -> Option<$name> {
                (bytes != [0; $len]).then_some($name(bytes))
            }

            /// The id's bytes.
            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// A random id from `rng`, never all zero.
            pub fn random<R: Rng + ?Sized>(rng: &mut R) -> $name {
                let mut bytes = [0; $len];
                rng.fill_bytes(&mut bytes);
                if bytes == [0; $len] {
                    // Keeps the id valid even if the RNG returns zeros (a stub in a test).
                    bytes[$len - 1] = 1;
                }
                $name(bytes)
            }
        }

        impl TryFrom<[u8; $len]> for $name {
            type Error = ZeroId;
            fn try_from(bytes: [u8; $len]) -> Result<$name, ZeroId> {
                $name::from_bytes(bytes).ok_or(ZeroId)
            }
        }

        impl From<$name> for [u8; $len] {
            fn from(id: $name) -> [u8; $len] {
                id.0
            }
        }

        impl fmt::Display for $name {
            /// Lowercase hex, as in `traceparent`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

id_type!(
    /// A trace's id: 16 bytes, never all zero, shared by every span of the trace.
    TraceId,
    16,
    "[u8; 16]"
);
id_type!(
    /// A span's id: 8 bytes, never all zero. Sent as `parent-id` to the callee.
    SpanId,
    8,
    "[u8; 8]"
);

/// Where a request sits in a distributed trace.
///
/// Serializes compactly (postcard: 16 + 8 + 1 bytes); deserializing rejects all-zero ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TraceContext {
    /// The trace this request belongs to.
    pub trace_id: TraceId,
    /// The current span: our own span once we act, the caller's when just parsed.
    pub span_id: SpanId,
    /// Trace flags; bit 0 is [`FLAG_SAMPLED`].
    pub flags: u8,
}

impl TraceContext {
    /// The start of a new trace.
    pub fn new_root<R: Rng + ?Sized>(rng: &mut R, sampled: bool) -> TraceContext {
        TraceContext {
            trace_id: TraceId::random(rng),
            span_id: SpanId::random(rng),
            flags: if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// A new span in the same trace, with the same flags (for the callee of an outgoing call).
    pub fn child<R: Rng + ?Sized>(&self, rng: &mut R) -> TraceContext {
        TraceContext {
            span_id: SpanId::random(rng),
            ..*self
        }
    }

    /// True if the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The `traceparent` header value (always version `00`).
    pub fn to_traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// An id for log lines that ties together everything done for one request across nodes: the
    /// trace id in lowercase hex (32 characters).
    pub fn request_id(&self) -> String {
        self.trace_id.to_string()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

impl FromStr for TraceContext {
    type Err = TraceError;
    fn from_str(s: &str) -> Result<TraceContext, TraceError> {
        parse_traceparent(s)
    }
}

/// Parses a `traceparent` header value by the W3C Trace Context rules.
///
/// For versions above `00`, only the first four fields are read, a `-` must follow them if
/// anything does, and only the sampled flag is kept (other bits may mean something else there).
pub fn parse_traceparent(s: &str) -> Result<TraceContext, TraceError> {
    let b = s.as_bytes();
    if b.len() < TRACEPARENT_LEN {
        return Err(TraceError::TooShort { len: b.len() });
    }
    let version = hex_array::<1>(&b[0..2]).ok_or(TraceError::Version)?[0];
    if version == 0xff {
        return Err(TraceError::Version);
    }
    for at in [2, 35, 52] {
        if b[at] != b'-' {
            return Err(TraceError::Separator { at });
        }
    }
    let trace_id = hex_array(&b[3..35])
        .and_then(TraceId::from_bytes)
        .ok_or(TraceError::TraceId)?;
    let span_id = hex_array(&b[36..52])
        .and_then(SpanId::from_bytes)
        .ok_or(TraceError::ParentId)?;
    let flags = hex_array::<1>(&b[53..55]).ok_or(TraceError::Flags)?[0];
    let flags = check_rest(version, b, flags)?;
    Ok(TraceContext {
        trace_id,
        span_id,
        flags,
    })
}

/// Applies the version rules to what follows the flags; returns the flags to keep.
fn check_rest(version: u8, b: &[u8], flags: u8) -> Result<u8, TraceError> {
    match (version, b.get(TRACEPARENT_LEN)) {
        (0, None) => Ok(flags),
        (0, Some(_)) => Err(TraceError::TooLong { len: b.len() }),
        (_, None | Some(b'-')) => Ok(flags & FLAG_SAMPLED),
        (_, Some(_)) => Err(TraceError::Separator {
            at: TRACEPARENT_LEN,
        }),
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn hex_array<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};
    use rand10::rngs::StdRng;
    use rand10::SeedableRng;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_the_spec_example() {
        let ctx = parse_traceparent(EXAMPLE).unwrap();
        assert_eq!(ctx.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ctx.span_id.to_string(), "b7ad6b7169203331");
        assert!(ctx.is_sampled());
        assert_eq!(ctx.to_traceparent(), EXAMPLE);
        assert_eq!(ctx.request_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(EXAMPLE.parse::<TraceContext>(), Ok(ctx));
    }

    #[test]
    fn rejects_what_the_spec_forbids() {
        let cases = [
            ("", TraceError::TooShort { len: 0 }),
            (&EXAMPLE[..54], TraceError::TooShort { len: 54 }),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                TraceError::TooLong { len: 61 },
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceError::Version,
            ),
            (
                "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceError::Version,
            ),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                TraceError::TraceId,
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                TraceError::TraceId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                TraceError::ParentId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
                TraceError::ParentId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0X",
                TraceError::Flags,
            ),
            (
                "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceError::Separator { at: 2 },
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
                TraceError::Separator { at: 35 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_traceparent(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn future_versions_parse_by_their_first_fields() {
        let future =
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-what-the-future-holds";
        let ctx = parse_traceparent(future).unwrap();
        assert_eq!(ctx.flags, FLAG_SAMPLED, "only the sampled bit is kept");
        assert_eq!(ctx.to_traceparent(), EXAMPLE);
        assert!(parse_traceparent(&future[..TRACEPARENT_LEN]).is_ok());
        assert_eq!(
            parse_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x"),
            Err(TraceError::Separator { at: 55 })
        );
    }

    #[test]
    fn root_and_child() {
        let mut rng = StdRng::seed_from_u64(1);
        let root = TraceContext::new_root(&mut rng, true);
        assert!(root.is_sampled());
        let child = root.child(&mut rng);
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.flags, root.flags);
        assert_ne!(child.span_id, root.span_id);
        assert!(!TraceContext::new_root(&mut rng, false).is_sampled());
        // Same seed, same ids: traces in the simulator reproduce.
        let again = TraceContext::new_root(&mut StdRng::seed_from_u64(1), true);
        assert_eq!(again, root);
    }

    #[test]
    fn serde_is_compact_and_validating() {
        let ctx = parse_traceparent(EXAMPLE).unwrap();
        let bytes = postcard::to_stdvec(&ctx).unwrap();
        assert_eq!(bytes.len(), 16 + 8 + 1);
        assert_eq!(postcard::from_bytes::<TraceContext>(&bytes).unwrap(), ctx);
        let zero_trace = [vec![0u8; 16], bytes[16..].to_vec()].concat();
        assert!(postcard::from_bytes::<TraceContext>(&zero_trace).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            if let (Some(trace_id), Some(span_id)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) {
                let ctx = TraceContext { trace_id, span_id, flags };
                prop_assert_eq!(parse_traceparent(&ctx.to_traceparent()), Ok(ctx));
                let bytes = postcard::to_stdvec(&ctx).unwrap();
                prop_assert_eq!(postcard::from_bytes::<TraceContext>(&bytes).unwrap(), ctx);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse_traceparent(&s);
        }

        /// Near-valid input: accepted exactly when it is all lowercase and ids are non-zero, and
        /// then it re-serializes to itself.
        #[test]
        fn near_valid_input(s in "00-[0-9a-fA-F]{32}-[0-9a-fA-F]{16}-[0-9a-fA-F]{2}") {
            let valid = !s.bytes().any(|c| c.is_ascii_uppercase())
                && s[3..35].bytes().any(|c| c != b'0')
                && s[36..52].bytes().any(|c| c != b'0');
            match parse_traceparent(&s) {
                Ok(ctx) => {
                    prop_assert!(valid);
                    prop_assert_eq!(ctx.to_traceparent(), s);
                }
                Err(_) => prop_assert!(!valid),
            }
        }

        #[test]
        fn mutated_example_never_panics(at in 0usize..60, c in any::<char>()) {
            let mut s: Vec<char> = EXAMPLE.chars().collect();
            if at < s.len() { s[at] = c; } else { s.push(c); }
            let s: String = s.into_iter().collect();
            if let Ok(ctx) = parse_traceparent(&s) {
                prop_assert_eq!(parse_traceparent(&ctx.to_traceparent()), Ok(ctx));
                if s.starts_with("00") {
                    prop_assert_eq!(ctx.to_traceparent(), s);
                }
            }
        }
    }
}
