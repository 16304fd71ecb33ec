//! `floor`: the least work a WebSocket echo server can do per message, as a
//! reference point for `bench/compare.sh` — not a server anyone should run.
//!
//! Same shape as wsmio's loop (one thread, edge-triggered mio, one `read` and
//! one `write` per readiness event, a short read ends reading) but nothing
//! else: the handshake only computes `Sec-WebSocket-Accept`, and each frame is
//! unmasked and sent back with no check at all — no UTF-8 validation, no
//! control-frame rules, no limits beyond caps on a partial frame and a
//! request head, no timers. The accept key and the unmasking are wsmio's own
//! (`proto::handshake::accept_key`, `proto::mask::apply_mask`), so the floor
//! is never slower than wsmio at either. Reading pauses while a peer is not
//! taking its echoes, so memory stays bounded.
//! What the generator measures against it is the cost of the kernel and of the
//! generator itself, which no server can go below on the same machine.
//!
//! Usage: `floor PORT` (listens on 127.0.0.1).

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, ErrorKind, Read, Write};
use wsmio::proto::handshake::{accept_key, find_head_end};
use wsmio::proto::mask::apply_mask;

/// One read's worth, as wsmio's loop uses.
const READ_BUF: usize = 256 * 1024;
/// A connection whose partial frame grows past this is dropped.
const MAX_PENDING: usize = 17 << 20;
/// A connection whose upgrade request grows past this is dropped.
const MAX_HEAD: usize = 8 << 10;
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    sock: TcpStream,
    open: bool,
    /// Bytes of an incomplete frame (or request) carried to the next read.
    pending: Vec<u8>,
    /// Bytes the kernel did not take yet.
    unsent: Vec<u8>,
    /// Close after `unsent` drains (a close frame was echoed).
    closing: bool,
    /// Reading stopped until `unsent` drains (the peer is not reading): at
    /// most one read's echo is ever held.
    paused: bool,
}

/// Accept every waiting connection. `true` if `accept` failed with more
/// than WouldBlock (logged unless `failing`: it already was).
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    failing: bool,
) -> bool {
    loop {
        let mut sock = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => {
                if !failing {
                    eprintln!("floor: accept: {e} (retrying every 100 ms)");
                }
                return true;
            }
        };
        let _ = sock.set_nodelay(true);
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut sock, Token(slot), interest)
            .is_err()
        {
            free.push(slot);
            continue;
        }
        conns[slot] = Some(Conn {
            sock,
            open: false,
            pending: Vec::new(),
            unsent: Vec::new(),
            closing: false,
            paused: false,
        });
    }
}

fn main() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: floor PORT");
            std::process::exit(2);
        }
    };
    let mut poll = Poll::new()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::with_capacity(READ_BUF);
    eprintln!("floor listening on {addr}");
    // `accept` failed with more than WouldBlock (out of descriptors, say):
    // the backlog raises no new edge, so try again every 100 ms.
    let mut accept_failed = false;
    loop {
        let timeout = accept_failed.then_some(std::time::Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if accept_failed {
            accept_failed = accept_all(&listener, &poll, &mut conns, &mut free, true);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_failed = accept_all(&listener, &poll, &mut conns, &mut free, accept_failed);
                continue;
            }
            let slot = ev.token().0;
            let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let mut dead = false;
            if ev.is_writable() && !c.unsent.is_empty() {
                dead = flush(c).is_err();
            }
            if ev.is_readable() && !c.unsent.is_empty() {
                c.paused = true;
            }
            // Edge-triggered: input left while paused is read once the
            // echoes drained.
            let readable = ev.is_readable() || c.paused;
            if readable && c.unsent.is_empty() && !dead && !c.closing {
                c.paused = false;
                dead = read(c, &mut buf, &mut out).is_err();
            }
            if dead || (c.closing && c.unsent.is_empty()) {
                if let Some(mut c) = conns[slot].take() {
                    let _ = poll.registry().deregister(&mut c.sock);
                    free.push(slot);
                }
            }
        }
    }
}

/// Read until a short read, answering what each read completes.
fn read(c: &mut Conn, buf: &mut [u8], out: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let n = match c.sock.read(buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let data: &mut [u8] = if c.pending.is_empty() {
            &mut buf[..n]
        } else {
            c.pending.extend_from_slice(&buf[..n]);
            &mut c.pending[..]
        };
        out.clear();
        let mut used = 0;
        if !c.open {
            used = handshake(data, out, &mut c.open)?;
        }
        if c.open {
            // Frames may arrive in the same read as the request.
            used += echo(&data[used..], out, &mut c.closing);
        }
        let rest = data.len() - used;
        if rest > MAX_PENDING {
            return Err(ErrorKind::InvalidData.into());
        }
        if c.pending.is_empty() {
            c.pending.extend_from_slice(&buf[used..n]);
        } else {
            c.pending.drain(..used);
        }
        if !out.is_empty() {
            if c.unsent.is_empty() {
                // The common case: straight from `out`, only a remainder kept.
                let n = match c.sock.write(out) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
                c.unsent.extend_from_slice(&out[n..]);
            } else {
                c.unsent.extend_from_slice(out);
                flush(c)?;
            }
        }
        if !c.unsent.is_empty() {
            // The peer is not taking its echoes: read on once they drain.
            c.paused = true;
            return Ok(());
        }
        if n < buf.len() || c.closing {
            return Ok(());
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while !c.unsent.is_empty() {
        match c.sock.write(&c.unsent) {
            Ok(n) => {
                c.unsent.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Answer a complete upgrade request; returns the bytes it used.
fn handshake(d: &[u8], out: &mut Vec<u8>, open: &mut bool) -> io::Result<usize> {
    let Some(end) = find_head_end(d, 0) else {
        if d.len() > MAX_HEAD {
            return Err(ErrorKind::InvalidData.into());
        }
        return Ok(0);
    };
    let head = String::from_utf8_lossy(&d[..end]);
    let key = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim())
    });
    let Some(key) = key else {
        return Err(ErrorKind::InvalidData.into());
    };
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    *open = true;
    Ok(end)
}

/// Echo every complete frame in `d`, unmasked; returns the bytes it used.
fn echo(d: &[u8], out: &mut Vec<u8>, closing: &mut bool) -> usize {
    let mut at = 0;
    while !*closing {
        let f = &d[at..];
        if f.len() < 2 {
            break;
        }
        let (len, head) = match f[1] & 0x7f {
            126 if f.len() >= 4 => (u16::from_be_bytes([f[2], f[3]]) as usize, 4),
            127 if f.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&f[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        let Some(total) = len.checked_add(head + 4).filter(|&t| t <= f.len()) else {
            break;
        };
        out.push(f[0]);
        match head {
            2 => out.push(len as u8),
            4 => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let mask = [f[head], f[head + 1], f[head + 2], f[head + 3]];
        let start = out.len();
        out.extend_from_slice(&f[head + 4..total]);
        apply_mask(&mut out[start..], mask, 0);
        // A close frame is echoed (status included) and ends the connection.
        *closing = f[0] & 0x0f == 0x8;
        at += total;
    }
    at
}
