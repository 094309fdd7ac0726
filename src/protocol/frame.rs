//! Length-prefixed frames: `u32` big-endian length, then that many bytes of
//! JSON. The length is checked against a maximum *before* anything is
//! allocated, so a hostile or buggy peer cannot make the daemon allocate
//! gigabytes or wait for bytes that never come beyond its read timeout.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request the daemon accepts.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest response the CLI accepts (a list of thousands of instances).
pub const MAX_RESPONSE: usize = 64 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection (cleanly, between frames).
    #[error("connection closed")]
    Closed,
    /// The length prefix exceeds the maximum.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not the JSON we expected.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Transport error (including EOF in the middle of a frame).
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn check_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Serializes `msg` into one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one frame (blocking; the CLI side).
pub fn read_sync<T: DeserializeOwned>(r: &mut impl Read, max: usize) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one frame (blocking; the CLI side).
pub fn write_sync<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))?;
    w.flush()
}

/// Reads one frame (async; the daemon side).
pub async fn read_async<T: DeserializeOwned>(
    r: &mut (impl AsyncReadExt + Unpin),
    max: usize,
) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one frame (async; the daemon side).
pub async fn write_async<T: Serialize>(
    w: &mut (impl AsyncWriteExt + Unpin),
    msg: &T,
) -> io::Result<()> {
    w.write_all(&encode(msg)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Hello, Request, ScaleTo, Target};

    #[test]
    fn round_trip() {
        let targets = Target::parse_all(&["api".into(), "3".into(), "all".into(), "007x".into()]);
        assert_eq!(
            targets,
            [
                Target::Name("api".into()),
                Target::Id(3),
                Target::All,
                Target::Name("007x".into())
            ]
        );
        let bytes = encode(&Request::Stop {
            missing_ok: false,
            targets: targets.clone(),
        });
        let back: Request = read_sync(&mut &bytes[..], MAX_REQUEST).unwrap();
        assert!(matches!(back, Request::Stop { targets: t, .. } if t == targets));
        let bytes = encode(&Request::Scale {
            app: "api".into(),
            to: ScaleTo::parse("-2").unwrap(),
        });
        let back: Request = read_sync(&mut &bytes[..], MAX_REQUEST).unwrap();
        assert!(matches!(
            back,
            Request::Scale {
                to: ScaleTo::Remove(2),
                ..
            }
        ));
    }

    #[test]
    fn oversized_is_refused_before_reading_body() {
        let mut bytes = ((MAX_REQUEST + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let err = read_sync::<Hello>(&mut &bytes[..], MAX_REQUEST).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == MAX_REQUEST + 1));
    }

    #[test]
    fn garbage_is_malformed_and_truncation_is_io() {
        let mut bytes = 5u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"\xff\x00abc");
        assert!(matches!(
            read_sync::<Hello>(&mut &bytes[..], MAX_REQUEST),
            Err(FrameError::Malformed(_))
        ));
        let truncated = &encode(&Hello::ours())[..7];
        assert!(matches!(
            read_sync::<Hello>(&mut &truncated[..], MAX_REQUEST),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_sync::<Hello>(&mut &b""[..], MAX_REQUEST),
            Err(FrameError::Closed)
        ));
    }
}
