//! A plain, non-streaming reading of RFC 6455 §5 for the server role: the
//! oracle that `tests/proto_props.rs` and the `connection` fuzz target hold
//! `proto::Connection` to.
//!
//! It decodes a whole client byte stream frame by frame from one buffer, in
//! the order the RFC states the checks, and says what the server must report
//! (events, as `Debug` strings of `proto::Event`), the error it must fail
//! with, and the bytes it must send back (pongs, the close reply, or the
//! failure's close frame). It shares no code with the streaming parser but
//! the `Error` names and `apply_mask_reference`.

use wsmio::proto::mask::apply_mask_reference;
use wsmio::proto::{CloseCode, Error, Event, Limits, Message};

/// Events, result and output for `stream` received whole by a server with
/// `limits` that sends nothing of its own.
pub fn reference(stream: &[u8], limits: Limits) -> (Vec<String>, Result<(), Error>, Vec<u8>) {
    let mut events = Vec::new();
    let mut out = Vec::new();
    let result = reference_inner(stream, limits, &mut events, &mut out);
    if let Err(e) = result {
        // §7.1.7: fail with a close frame carrying the error's code.
        out.extend([0x88, 2 + e.reason().len() as u8]);
        out.extend(e.close_code().0.to_be_bytes());
        out.extend(e.reason().as_bytes());
    }
    (events, result, out)
}

fn reference_inner(
    stream: &[u8],
    limits: Limits,
    events: &mut Vec<String>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    // (text?, bytes so far, declared length so far) of the open message.
    let mut open: Option<(bool, Vec<u8>, u64)> = None;
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        if rest.len() < 2 {
            return Ok(());
        }
        let (b0, b1) = (rest[0], rest[1]);
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let control = op & 0x8 != 0;
        // §5.2: RSV bits, then reserved opcodes.
        if b0 & 0x70 != 0 {
            return Err(Error::ReservedBits);
        }
        if !matches!(op, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return Err(Error::ReservedOpcode(op));
        }
        // §5.5: control frames are not fragmented and carry <= 125 bytes.
        if control && !fin {
            return Err(Error::FragmentedControl);
        }
        if control && b1 & 0x7F > 125 {
            return Err(Error::ControlTooLong);
        }
        // §5.1: client frames are masked.
        if b1 & 0x80 == 0 {
            return Err(Error::UnmaskedFrame);
        }
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if rest.len() < 2 + ext + 4 {
            return Ok(());
        }
        // §5.2: minimal length encoding; 64-bit lengths have the MSB clear.
        let len = match ext {
            2 => {
                let n = u16::from_be_bytes([rest[2], rest[3]]) as u64;
                if n < 126 {
                    return Err(Error::NonMinimalLength);
                }
                n
            }
            8 => {
                let n = u64::from_be_bytes(rest[2..10].try_into().unwrap());
                if n >> 63 != 0 {
                    return Err(Error::LengthOverflow);
                }
                if n < 65536 {
                    return Err(Error::NonMinimalLength);
                }
                n
            }
            _ => (b1 & 0x7F) as u64,
        };
        // Control frames are bounded by 125 bytes (§5.5) whatever the limit.
        if len > limits.max_frame_size && !control {
            return Err(Error::FrameTooBig);
        }
        if !control {
            // §5.4: a continuation needs an open message, and a new message
            // needs none open.
            match (op, &mut open) {
                (0, None) => return Err(Error::UnexpectedContinuation),
                (0, Some(_)) => {}
                (_, Some(_)) => return Err(Error::ExpectedContinuation),
                (_, None) => open = Some((op == 1, Vec::new(), 0)),
            }
            let m = open.as_mut().unwrap();
            m.2 =
                m.2.checked_add(len)
                    .filter(|&n| n <= limits.max_message_size)
                    .ok_or(Error::MessageTooBig)?;
        }
        let key: [u8; 4] = rest[2 + ext..6 + ext].try_into().unwrap();
        let body_at = 6 + ext;
        let avail = (len.min((rest.len() - body_at) as u64)) as usize;
        let mut payload = rest[body_at..body_at + avail].to_vec();
        apply_mask_reference(&mut payload, key, 0);
        let complete = avail as u64 == len;
        if !control {
            let (text, bytes, _) = open.as_mut().unwrap();
            bytes.extend_from_slice(&payload);
            // §8.1: fail as soon as the text cannot be UTF-8 any more.
            if *text {
                if let Err(e) = std::str::from_utf8(bytes) {
                    if e.error_len().is_some() || (complete && fin) {
                        return Err(Error::InvalidUtf8);
                    }
                }
            }
            if !complete {
                return Ok(());
            }
            if fin {
                let (text, bytes, _) = open.take().unwrap();
                let msg = if text {
                    Message::Text(std::str::from_utf8(&bytes).unwrap())
                } else {
                    Message::Binary(&bytes)
                };
                events.push(format!("{:?}", Event::Message(msg)));
            }
        } else {
            if !complete {
                return Ok(());
            }
            match op {
                0x9 => {
                    // §5.5.2: a pong with the same payload.
                    events.push(format!("{:?}", Event::Ping(&payload)));
                    out.extend([0x8A, payload.len() as u8]);
                    out.extend(&payload);
                }
                0xA => events.push(format!("{:?}", Event::Pong(&payload))),
                _ => {
                    // §5.5.1, §7.4: empty, or a code allowed on the wire and
                    // a UTF-8 reason; the reply echoes the code.
                    let code = match payload.len() {
                        0 => None,
                        1 => return Err(Error::InvalidClosePayload),
                        _ => Some(CloseCode(u16::from_be_bytes([payload[0], payload[1]]))),
                    };
                    // §7.4.1, §7.4.2: defined codes (and IANA's 1012-1014),
                    // library and private ranges.
                    let allowed =
                        |c: CloseCode| matches!(c.0, 1000..=1003 | 1007..=1014 | 3000..=4999);
                    if code.is_some_and(|c| !allowed(c)) {
                        return Err(Error::InvalidClosePayload);
                    }
                    let reason = match payload.get(2..) {
                        None => "",
                        Some(r) => std::str::from_utf8(r).map_err(|_| Error::InvalidCloseReason)?,
                    };
                    events.push(format!("{:?}", Event::Close { code, reason }));
                    match code {
                        None => out.extend([0x88, 0]),
                        Some(c) => {
                            out.extend([0x88, 2]);
                            out.extend(c.0.to_be_bytes());
                        }
                    }
                    return Ok(());
                }
            }
        }
        pos += body_at + avail;
    }
}
