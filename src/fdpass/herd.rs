//! herd's worker protocol (docs/PROTOCOL.md): `SOCK_SEQPACKET` messages, one
//! kind byte followed by little-endian `u64` connection ids.
//!
//! | kind | direction | payload | fds |
//! |---|---|---|---|
//! | `C` | daemon → worker | ids of the connections attached | one per id, same order |
//! | `S` | daemon → worker | — (stop taking new connections, finish, exit) | — |
//! | `R` | worker → daemon | — (ready: send me connections) | — |
//! | `H` | worker → daemon | — (my server speaks HTTP: its clients send first) | — |
//! | `A` | worker → daemon | ids received (the daemon closes its copies) | — |
//! | `D` | worker → daemon | ids closed (in-flight goes down) | — |
//! | `T` | worker → daemon | (id, ns open) pairs: closed, timed by the worker | — |
//! | `L` | worker → daemon | (µs, count) pairs: requests served and their latency | — |

/// The counters page a herd worker gets as `HERD_COUNTERS_FD` (fd 4): a
/// 4096-byte shared memfd of little-endian `u64` words, updated with
/// atomic adds. A worker that counts its closes here sends no `D`.
pub mod counters {
    /// The environment variable naming the page's descriptor.
    pub const ENV: &str = "HERD_COUNTERS_FD";
    /// Word 0: flags the worker sets.
    pub const FLAGS: usize = 0;
    /// Word 1: connections the worker has closed.
    pub const CLOSED: usize = 1;
    /// Word 2: the sum of how long those were open, in nanoseconds (from
    /// receipt to close), for `least-time`.
    pub const CLOSED_NS: usize = 2;
    /// Flag: closes are counted in this page rather than reported with `D`.
    pub const COUNTS_CLOSES: u64 = 1;
}

/// Most ids in one message (the fd limit per message).
pub const MAX_IDS: usize = crate::sys::fdpass::MAX_FDS_PER_MSG;
/// Largest valid message.
pub const MAX_MSG: usize = 1 + MAX_IDS * 8;

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Connections (their fds travel with the message).
    Conns(Vec<u64>),
    /// Stop accepting, drain, exit.
    Stop,
    /// The worker is ready.
    Ready,
    /// The worker's server speaks HTTP (or TLS): its clients send first,
    /// so the daemon may accept a connection only once its request has
    /// arrived (`TCP_DEFER_ACCEPT`) and keep that request for a replay.
    Http,
    /// The worker has these connections.
    Acked(Vec<u64>),
    /// The worker closed these connections.
    Done(Vec<u64>),
    /// The worker closed these connections, each after being open this
    /// many ns by its own clock (receipt to close): the service time
    /// without the wait in the channel, the worker's queue or the daemon's
    /// reading of this message (herd's Node preload sends these). 0 ns:
    /// not timed.
    Timed(Vec<(u64, u64)>),
    /// The worker served requests: (latency in µs, how many) pairs, a
    /// worker's aggregate since its last report (a few a second at most).
    Latency(Vec<(u64, u64)>),
}

/// Most (id, ns) pairs in one `T` message (it fits in [`MAX_MSG`]).
pub const MAX_TIMED: usize = MAX_IDS / 2;

/// A message that is not valid herd protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Empty datagram.
    #[error("empty message")]
    Empty,
    /// Unknown kind byte.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// Payload is not a whole number of ids, too long, or has a payload where none belongs.
    #[error("bad payload length {0} for this message kind")]
    BadLength(usize),
}

impl Msg {
    /// Serializes into `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        if let Msg::Timed(pairs) | Msg::Latency(pairs) = self {
            out.push(if matches!(self, Msg::Timed(_)) {
                b'T'
            } else {
                b'L'
            });
            for (id, ns) in pairs {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&ns.to_le_bytes());
            }
            return;
        }
        let (kind, ids): (u8, &[u64]) = match self {
            Msg::Conns(ids) => (b'C', ids),
            Msg::Stop => (b'S', &[]),
            Msg::Ready => (b'R', &[]),
            Msg::Http => (b'H', &[]),
            Msg::Acked(ids) => (b'A', ids),
            Msg::Done(ids) => (b'D', ids),
            Msg::Timed(_) | Msg::Latency(_) => unreachable!("encoded above"),
        };
        out.push(kind);
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// Serializes into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + 8 * 4);
        self.encode_into(&mut v);
        v
    }

    /// Parses one message.
    pub fn decode(buf: &[u8]) -> Result<Msg, ProtoError> {
        let (&kind, rest) = buf.split_first().ok_or(ProtoError::Empty)?;
        let ids = || -> Result<Vec<u64>, ProtoError> {
            if rest.is_empty() || rest.len() % 8 != 0 || rest.len() / 8 > MAX_IDS {
                return Err(ProtoError::BadLength(rest.len()));
            }
            Ok(rest
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect())
        };
        let bare = |m: Msg| {
            if rest.is_empty() {
                Ok(m)
            } else {
                Err(ProtoError::BadLength(rest.len()))
            }
        };
        match kind {
            b'C' => Ok(Msg::Conns(ids()?)),
            b'A' => Ok(Msg::Acked(ids()?)),
            b'D' => Ok(Msg::Done(ids()?)),
            b'T' | b'L' => {
                if rest.is_empty() || rest.len() % 16 != 0 || rest.len() / 16 > MAX_TIMED {
                    return Err(ProtoError::BadLength(rest.len()));
                }
                let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
                let pairs = rest
                    .chunks_exact(16)
                    .map(|c| (word(&c[..8]), word(&c[8..])))
                    .collect();
                Ok(if kind == b'T' {
                    Msg::Timed(pairs)
                } else {
                    Msg::Latency(pairs)
                })
            }
            b'S' => bare(Msg::Stop),
            b'R' => bare(Msg::Ready),
            b'H' => bare(Msg::Http),
            k => Err(ProtoError::UnknownKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            Msg::Conns(vec![1, u64::MAX]),
            Msg::Stop,
            Msg::Ready,
            Msg::Http,
            Msg::Acked(vec![7]),
            Msg::Done(vec![3, 4, 5]),
            Msg::Timed(vec![(3, 250_000), (u64::MAX, 1)]),
            Msg::Latency(vec![(120, 7), (4_000, 1)]),
        ] {
            assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
        }
        assert_eq!(Msg::Ready.encode(), b"R");
        assert_eq!(Msg::Acked(vec![1]).encode(), b"A\x01\0\0\0\0\0\0\0");
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(Msg::decode(b""), Err(ProtoError::Empty));
        assert_eq!(Msg::decode(b"Z"), Err(ProtoError::UnknownKind(b'Z')));
        assert_eq!(Msg::decode(b"A\x01\x02"), Err(ProtoError::BadLength(2)));
        assert_eq!(Msg::decode(b"A"), Err(ProtoError::BadLength(0)));
        assert_eq!(Msg::decode(b"Rx"), Err(ProtoError::BadLength(1)));
        assert_eq!(Msg::decode(b"H\0"), Err(ProtoError::BadLength(1)));
        // `T` carries whole (id, ns) pairs.
        assert_eq!(Msg::decode(b"T"), Err(ProtoError::BadLength(0)));
        assert_eq!(
            Msg::decode(b"T\x01\0\0\0\0\0\0\0"),
            Err(ProtoError::BadLength(8))
        );
        let too_many = Msg::Timed((0..=MAX_TIMED as u64).map(|i| (i, i)).collect()).encode();
        assert!(matches!(
            Msg::decode(&too_many),
            Err(ProtoError::BadLength(_))
        ));
        let too_many = Msg::Acked((0..=MAX_IDS as u64).collect()).encode();
        assert!(matches!(
            Msg::decode(&too_many),
            Err(ProtoError::BadLength(_))
        ));
    }
}
