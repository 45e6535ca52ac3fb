//! Reading headers and frames off QUIC receive streams, with every size checked first.

use bytes::{Bytes, BytesMut};
use quinn::RecvStream;

use crate::frame::{FrameError, StreamHeader, FRAME_PREFIX_LEN, STREAM_HEADER_LEN};

/// Why reading from a stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer sent bytes that break the framing rules.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    #[error("stream failed: {0}")]
    Stream(String),
}

impl From<quinn::ReadExactError> for ReadError {
    fn from(error: quinn::ReadExactError) -> Self {
        match error {
            quinn::ReadExactError::FinishedEarly(buffered) => {
                ReadError::Frame(FrameError::Truncated { buffered })
            }
            quinn::ReadExactError::ReadError(e) => ReadError::Stream(e.to_string()),
        }
    }
}

pub(crate) async fn read_header(recv: &mut RecvStream) -> Result<StreamHeader, ReadError> {
    let mut header = [0u8; STREAM_HEADER_LEN];
    recv.read_exact(&mut header).await?;
    Ok(StreamHeader::decode(header)?)
}

pub(crate) async fn read_u32(recv: &mut RecvStream) -> Result<u32, ReadError> {
    let mut bytes = [0u8; 4];
    recv.read_exact(&mut bytes).await?;
    Ok(u32::from_be_bytes(bytes))
}

pub(crate) async fn read_u64(recv: &mut RecvStream) -> Result<u64, ReadError> {
    let mut bytes = [0u8; 8];
    recv.read_exact(&mut bytes).await?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads one length-prefixed frame of at most `max` bytes. The frame's buffer grows with the
/// bytes that arrive, never ahead of them: a peer that announces `max` and sends nothing more
/// holds no more than it sent (sized by the announcement, a few bytes on each of a connection's
/// streams held the limit each).
pub(crate) async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Bytes, ReadError> {
    let len = read_u32(recv).await? as usize;
    if len > max {
        return Err(FrameError::Oversized { len, max }.into());
    }
    let mut body = BytesMut::new();
    while body.len() < len {
        let chunk = recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| ReadError::Stream(e.to_string()))?;
        let Some(chunk) = chunk else {
            let buffered = body.len();
            return Err(FrameError::Truncated { buffered }.into());
        };
        if chunk.bytes.len() == len {
            return Ok(chunk.bytes); // the whole frame in one piece: no copy
        }
        body.extend_from_slice(&chunk.bytes);
    }
    Ok(body.freeze())
}

/// The header plus one frame, as a single buffer to write.
pub(crate) fn header_and_frame(
    header: StreamHeader,
    payload: &[u8],
    max: usize,
) -> Result<BytesMut, FrameError> {
    let mut out = BytesMut::with_capacity(STREAM_HEADER_LEN + FRAME_PREFIX_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    crate::frame::encode_frame(&mut out, payload, max)?;
    Ok(out)
}
