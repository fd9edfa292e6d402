//! y-protocols v1 framing, byte-exact with the `y-websocket` client: a frame holds one
//! or more messages laid end to end; each is a lib0 varUint type followed by its
//! payload. The payloads themselves (state vectors, updates, awareness) are decoded by
//! yrs; this module only finds the message boundaries and says precisely what is wrong
//! with a frame that is not well formed (yrs's own reader treats a truncated message as
//! the end of the frame).

/// One message of a frame, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    SyncStep1(&'a [u8]),
    SyncStep2(&'a [u8]),
    Update(&'a [u8]),
    Awareness(&'a [u8]),
    /// An auth message from a client: y-websocket clients never send one; ignored.
    Auth,
    QueryAwareness,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("truncated message: {0}")]
    Truncated(&'static str),
    #[error("a varUint longer than 53 bits")]
    VarIntTooLong,
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u64),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn var_uint(&mut self, what: &'static str) -> Result<u64, FrameError> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let byte = *self.data.get(self.pos).ok_or(FrameError::Truncated(what))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return if value >> 53 == 0 {
                    Ok(value)
                } else {
                    Err(FrameError::VarIntTooLong)
                };
            }
            shift += 7;
            if shift > 49 {
                return Err(FrameError::VarIntTooLong);
            }
        }
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], FrameError> {
        let len = self.var_uint(what)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|end| *end <= self.data.len())
            .ok_or(FrameError::Truncated(what))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
}

/// Splits a frame into its messages.
pub fn parse(frame: &[u8]) -> Result<Vec<Message<'_>>, FrameError> {
    let mut reader = Reader {
        data: frame,
        pos: 0,
    };
    let mut messages = Vec::new();
    while reader.pos < frame.len() {
        let message = match reader.var_uint("message type")? {
            0 => match reader.var_uint("sync type")? {
                0 => Message::SyncStep1(reader.bytes("state vector")?),
                1 => Message::SyncStep2(reader.bytes("sync step 2")?),
                2 => Message::Update(reader.bytes("update")?),
                other => return Err(FrameError::UnknownSyncType(other)),
            },
            1 => Message::Awareness(reader.bytes("awareness update")?),
            2 => {
                if reader.var_uint("auth type")? == 0 {
                    reader.bytes("auth reason")?;
                }
                Message::Auth
            }
            3 => Message::QueryAwareness,
            other => return Err(FrameError::UnknownType(other)),
        };
        messages.push(message);
    }
    Ok(messages)
}

fn var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn with_bytes(out: &mut Vec<u8>, prefix: &[u8], bytes: &[u8]) {
    out.extend_from_slice(prefix);
    var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn sync_step1(out: &mut Vec<u8>, state_vector: &[u8]) {
    with_bytes(out, &[0, 0], state_vector);
}

pub fn sync_step2(out: &mut Vec<u8>, update: &[u8]) {
    with_bytes(out, &[0, 1], update);
}

pub fn update(out: &mut Vec<u8>, update: &[u8]) {
    with_bytes(out, &[0, 2], update);
}

pub fn awareness(out: &mut Vec<u8>, awareness_update: &[u8]) {
    with_bytes(out, &[1], awareness_update);
}

pub fn permission_denied(out: &mut Vec<u8>, reason: &str) {
    with_bytes(out, &[2, 0], reason.as_bytes());
}

/// An awareness update with no entries: a message clients apply as a no-op, sent to
/// keep their 30 s silence timer from firing.
pub const KEEPALIVE: &[u8] = &[1, 1, 0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_messages() {
        // Step1 of an empty doc, an update, an awareness update and a query, in one frame.
        let mut frame = vec![0, 0, 1, 0];
        frame.extend_from_slice(&[0, 2, 3, 9, 9, 9]);
        frame.extend_from_slice(&[1, 2, 0xaa, 0xbb, 3]);
        assert_eq!(
            parse(&frame),
            Ok(vec![
                Message::SyncStep1(&[0]),
                Message::Update(&[9, 9, 9]),
                Message::Awareness(&[0xaa, 0xbb]),
                Message::QueryAwareness,
            ])
        );
    }

    #[test]
    fn bad_frames_say_why() {
        assert_eq!(parse(&[0, 2, 5, 1]), Err(FrameError::Truncated("update")));
        assert_eq!(parse(&[0x80]), Err(FrameError::Truncated("message type")));
        assert_eq!(parse(&[7]), Err(FrameError::UnknownType(7)));
        assert_eq!(parse(&[0, 9, 0]), Err(FrameError::UnknownSyncType(9)));
        assert_eq!(
            parse(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(FrameError::VarIntTooLong)
        );
    }

    #[test]
    fn encodes_like_lib0() {
        // From the reference dumps: SyncStep1 of an empty doc, permission denied "no".
        let mut out = Vec::new();
        sync_step1(&mut out, &[0]);
        assert_eq!(out, [0, 0, 1, 0]);
        out.clear();
        permission_denied(&mut out, "no");
        assert_eq!(out, [2, 0, 2, b'n', b'o']);
        out.clear();
        var_uint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
