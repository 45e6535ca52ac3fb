//! How every frame between gateways of two clusters, and between a node and its cluster's
//! gateway relaying for it, is encoded: postcard, followed by a four-byte trailer naming the
//! wire version.
//!
//! Why a trailer and not a header: the releases before it decode with `postcard::from_bytes`,
//! which reads a frame from its first byte and ignores whatever follows, so they still read
//! our frames, and their frames (no trailer) still read here. Why the trailer at all: without
//! it a frame of another release is read by our schema alone, and one whose kinds or fields
//! differ from ours is either refused with a decoder's message or, worse, read as something it
//! is not (a field a newer release appended was silently dropped). Now a frame must decode
//! exactly (nothing left over but the trailer), and a version above ours is refused, with a
//! message that says so, before its body is looked at.
//!
//! A frame without a trailer is recognised because postcard's encoding of a value is never a
//! prefix of another value's of the same type: a trailered frame never decodes exactly as a
//! whole, so reading a frame whole first never mistakes it for an old one.
//!
//! The rule for later releases: any change of a request or reply that an older gateway would
//! read differently (a kind or field added, removed or changed) raises [`WIRE_VERSION`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The federation wire version this release writes and the highest it reads.
pub const WIRE_VERSION: u16 = 1;

/// Marks the trailer, before the version (big-endian).
const TRAILER_MARK: [u8; 2] = *b"FV";
const TRAILER: usize = TRAILER_MARK.len() + 2;

/// Why a frame between gateways could not be written or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame was written by a release with a newer wire format.
    #[error(
        "a federation frame of wire version {version}, newer than this gateway's {WIRE_VERSION}: \
         run the gateways of a link, and the nodes relaying through them, on releases that share \
         a wire version"
    )]
    Newer {
        /// The frame's version.
        version: u16,
    },
    /// Not a frame of this kind: it does not decode, or bytes are left over.
    #[error("malformed federation frame: {0}")]
    Malformed(String),
    /// The value did not encode.
    #[error("federation frame does not encode: {0}")]
    Encode(String),
}

/// Encodes `frame`, with the version trailer.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, WireError> {
    let mut bytes = postcard::to_stdvec(frame).map_err(|e| WireError::Encode(e.to_string()))?;
    bytes.extend_from_slice(&TRAILER_MARK);
    bytes.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    Ok(bytes)
}

/// Decodes a frame of this release, or of one before the trailer existed; refuses a newer
/// version and anything that does not decode exactly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let whole = exactly::<T>(bytes);
    if whole.is_ok() {
        return whole; // a release before the trailer
    }
    let Some((body, version)) = split_trailer(bytes) else {
        return whole;
    };
    if version > WIRE_VERSION {
        return Err(WireError::Newer { version });
    }
    exactly(body)
}

/// The body and the version, when `bytes` ends with a trailer.
fn split_trailer(bytes: &[u8]) -> Option<(&[u8], u16)> {
    let at = bytes.len().checked_sub(TRAILER)?;
    let (body, trailer) = bytes.split_at(at);
    let (mark, version) = trailer.split_at(TRAILER_MARK.len());
    let version = u16::from_be_bytes(version.try_into().ok()?);
    (mark == TRAILER_MARK).then_some((body, version))
}

/// `bytes` as one `T` and nothing more.
fn exactly<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(WireError::Malformed(format!(
            "{} bytes after the frame",
            rest.len()
        ))),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::{FederationReply, FederationRequest};
    use super::*;
    use crate::federation::GlobalDirectory;
    use crate::services::trace::TraceContext;

    fn trace() -> TraceContext {
        use rand10::SeedableRng;
        TraceContext::new_root(&mut rand10::rngs::StdRng::seed_from_u64(3), true)
    }

    fn call() -> FederationRequest {
        FederationRequest::Call {
            service: "billing".into(),
            body: vec![1, 2, 3],
            deadline_micros: 200_000,
            trace: trace(),
            idempotent: false,
        }
    }

    fn requests() -> Vec<FederationRequest> {
        vec![
            FederationRequest::Probe {
                directory: GlobalDirectory::default(),
            },
            call(),
            FederationRequest::Bridge(Vec::new()),
            FederationRequest::Interest(vec!["news.>".into()]),
        ]
    }

    /// `FederationRequest` as a later release might have it: a field appended to `Call`
    /// (the previous release appended `idempotent` in just this way).
    #[derive(Serialize, Deserialize)]
    enum Later {
        Probe {
            directory: GlobalDirectory,
        },
        Call {
            service: String,
            body: Vec<u8>,
            deadline_micros: u64,
            trace: TraceContext,
            idempotent: bool,
            priority: u8,
        },
    }

    fn later_call() -> Later {
        Later::Call {
            service: "billing".into(),
            body: vec![1, 2, 3],
            deadline_micros: 200_000,
            trace: trace(),
            idempotent: false,
            priority: 7,
        }
    }

    /// `body` with a trailer naming `version`.
    fn trailered(mut body: Vec<u8>, version: u16) -> Vec<u8> {
        body.extend_from_slice(&TRAILER_MARK);
        body.extend_from_slice(&version.to_be_bytes());
        body
    }

    #[test]
    fn frames_of_this_release_read_back() {
        for request in requests() {
            assert_eq!(
                decode::<FederationRequest>(&encode(&request).unwrap()),
                Ok(request)
            );
        }
        let reply = FederationReply::Refused("no".into());
        assert_eq!(decode(&encode(&reply).unwrap()), Ok(reply));
    }

    /// What keeps links to older gateways working, both ways: they read with
    /// `postcard::from_bytes`, which ignores the trailer, and write without one.
    #[test]
    fn frames_of_releases_before_the_version_read_both_ways() {
        for request in requests() {
            let ours = encode(&request).unwrap();
            let older_reads = postcard::from_bytes::<FederationRequest>(&ours);
            assert_eq!(older_reads.as_ref(), Ok(&request));
            let theirs = postcard::to_stdvec(&request).unwrap();
            assert_eq!(decode::<FederationRequest>(&theirs), Ok(request));
        }
    }

    #[test]
    fn a_newer_version_is_refused_with_its_number() {
        let newer = WIRE_VERSION + 1;
        let same_body = trailered(postcard::to_stdvec(&call()).unwrap(), newer);
        let err = decode::<FederationRequest>(&same_body).unwrap_err();
        assert_eq!(err, WireError::Newer { version: newer });
        assert!(
            err.to_string().contains("newer than this gateway's"),
            "{err}"
        );
        let changed_body = trailered(postcard::to_stdvec(&later_call()).unwrap(), newer);
        assert_eq!(
            decode::<FederationRequest>(&changed_body),
            Err(WireError::Newer { version: newer })
        );
    }

    /// Before the version, a field a later release appended was read past and dropped: the
    /// call was served as something its caller did not send.
    #[test]
    fn an_appended_field_is_refused_not_dropped() {
        let unversioned = postcard::to_stdvec(&later_call()).unwrap();
        assert!(matches!(
            decode::<FederationRequest>(&unversioned),
            Err(WireError::Malformed(_))
        ));
        let same_version = trailered(unversioned, WIRE_VERSION);
        assert!(matches!(
            decode::<FederationRequest>(&same_version),
            Err(WireError::Malformed(_))
        ));
    }

    /// `FederationRequest` of the release before `Call` carried `idempotent`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Earlier {
        Probe {
            directory: GlobalDirectory,
        },
        Call {
            service: String,
            body: Vec<u8>,
            deadline_micros: u64,
            trace: TraceContext,
        },
    }

    /// Across that change calls go one way only: its gateways read ours past the flag (and
    /// serve them as not idempotent, the safe reading), ours refuse theirs.
    #[test]
    fn calls_of_the_release_before_idempotent_are_refused_and_ours_read_there() {
        let earlier = Earlier::Call {
            service: "billing".into(),
            body: vec![1, 2, 3],
            deadline_micros: 200_000,
            trace: trace(),
        };
        let theirs = postcard::to_stdvec(&earlier).unwrap();
        assert!(matches!(
            decode::<FederationRequest>(&theirs),
            Err(WireError::Malformed(_))
        ));
        let ours = encode(&call()).unwrap();
        assert_eq!(postcard::from_bytes::<Earlier>(&ours), Ok(earlier));
    }

    #[test]
    fn garbage_and_truncations_are_refused_without_panic() {
        let body = postcard::to_stdvec(&call()).unwrap();
        for cut in 0..body.len() {
            assert!(
                decode::<FederationRequest>(&body[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode::<FederationRequest>(&[0xff; 64]).is_err());
        assert!(decode::<FederationRequest>(b"FV\x00\x01").is_err());
    }
}
