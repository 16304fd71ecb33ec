//! Writing and ending: each connection's queued output once per turn, the
//! drain event, and the end of a connection — RFC 6455 §7.1.1's rule that the
//! server closes TCP first, without a reset (`nothing_unread`).

use std::io::{self, Read};

use super::conn::{Conn, Phase};
use super::core::slot;
use super::ctx::Ctx;
use super::handler::{CloseInfo, Handler};
use super::id::ConnId;
use super::server::Server;
use super::stream::Stream;
use crate::proto::{CloseCode, CloseState, Role};

impl Server {
    /// Flush every connection with queued output: one write per
    /// connection per turn. Output to other connections (broadcasts) waits
    /// here, so all of a turn's deliveries to one peer go out together.
    pub(super) fn flush_all<H: Handler>(&mut self, handler: &mut H) {
        let hard = self.core.config.max_queued_bytes;
        let mut round = 0;
        while !self.core.dirty.is_empty() && round < 4 {
            round += 1;
            let spare = std::mem::take(&mut self.spare_dirty);
            let mut dirty = std::mem::replace(&mut self.core.dirty, spare);
            for &id in &dirty {
                self.flush_conn(id, handler);
                // Resume reading from a peer whose queue has drained.
                let Some(c) = self.core.get_mut(id) else {
                    continue;
                };
                if may_resume(c, hard) {
                    c.read_paused = false;
                    self.read(id, true, handler);
                }
            }
            dirty.clear();
            self.spare_dirty = dirty;
        }
    }

    /// Write one connection's queue (if it is marked dirty), then apply
    /// what follows: the drain event, our TCP shutdown when finishing.
    pub(super) fn flush_conn<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let hard = self.core.config.max_queued_bytes;
        let soft = self.core.config.backpressure_limit.min(hard);
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        if !c.dirty {
            return;
        }
        c.dirty = false;
        if c.abort {
            self.remove(id, handler);
            return;
        }
        // A client connection's connect may have completed (`connect.rs`).
        if matches!(c.phase, Phase::Connecting(_)) && !self.dialed(id) {
            return;
        }
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let flushed =
            c.wq.flush(&mut c.stream, &mut self.core.pool)
                .and_then(|done| Ok(done && c.stream.flush_pending()?));
        let flushed = match flushed {
            Ok(done) => done,
            Err(e) => {
                log::debug!("conn {id}: write: {e}");
                self.core.dial_failed(id, super::connect::dial_io_error(e));
                self.remove(id, handler);
                return;
            }
        };
        // Not all written: the peer is behind (see `Core::queue_full`).
        c.backlogged = !flushed;
        if c.backpressured && c.wq.len() < soft {
            c.backpressured = false;
            let mut ctx = Ctx::new(&mut self.core);
            handler.drain(&mut ctx, id);
        }
        let Some(c) = self.core.get_mut(id) else {
            return;
        };
        let Phase::Finishing(f) = &mut c.phase else {
            return;
        };
        if !flushed || !c.wq.is_empty() {
            return;
        }
        if f.peer_eof {
            // The peer already closed its side.
            self.remove(id, handler);
        } else if c.tx.close_state() == CloseState::Closed
            && c.tx.role() == Role::Server
            && !c.stream.is_tls()
            && nothing_unread(&mut c.stream, &mut self.read_buf)
        {
            // RFC 6455 §7.1.1: both close frames have crossed, so the
            // server closes the TCP connection first. Closing now frees
            // the socket a round trip sooner than waiting for the
            // peer's FIN; the kernel sends our FIN after the close frame.
            self.remove(id, handler);
        } else if !f.write_shut {
            // RFC 6455 §7.1.1: the server closes the TCP connection
            // first; the peer's FIN ends it. (A client waits for the
            // server's, with its own side shut down.)
            f.write_shut = c.stream.shutdown_write();
        }
    }

    /// Drop a connection now and tell the handler if it was upgraded.
    pub(super) fn remove<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        if self.core.get(id).is_none() {
            return;
        }
        let mut c = self.core.conns.remove(id.key as usize);
        if let Some(sock) = c.stream.socket() {
            let _ = self.poll.registry().deregister(sock);
        }
        c.wq.clear(&mut self.core.pool);
        self.core.held_changed(c.held(), 0);
        if let Phase::Connecting(d) | Phase::Requested(d) = &mut c.phase {
            // A client connection that never opened.
            self.core.dialing -= 1;
            let e = d.failure();
            handler.connect_failed(&mut Ctx::new(&mut self.core), id, e);
        }
        if c.phase.upgraded() {
            self.core.open_count -= 1;
            let clean = c.tx.close_state() == CloseState::Closed && !c.abort;
            let code = if c.close_code == 0 {
                CloseCode::ABNORMAL
            } else {
                CloseCode(c.close_code)
            };
            let info = CloseInfo {
                code,
                clean,
                by_peer: matches!(c.phase, Phase::Finishing(f) if f.by_peer),
            };
            let mut ctx = Ctx::new(&mut self.core);
            handler.close(&mut ctx, id, info);
        }
        // After `close`, which may still read it; only this generation's:
        // a callback above may have connected again into the same slot.
        self.core.states.remove(id.key as usize, id.gen);
        if !self.core.protocols.is_empty() {
            self.core.protocols.remove(&id);
        }
        drop(c);
    }
}

/// May the socket be closed without a reset? Closing a socket with unread
/// input makes the kernel answer with RST instead of FIN, and a reset can
/// destroy the peer's unread copy of our close frame. One read tells: `true`
/// when nothing is waiting (or the peer already sent its FIN). Input that is
/// waiting — a peer still sending after its close frame, which RFC 6455
/// §5.5.1 forbids — is discarded, and the caller falls back to shutting down
/// its side and waiting for the peer's FIN. TLS streams always take that
/// path, so that their close_notify alerts can cross.
fn nothing_unread(stream: &mut Stream, buf: &mut [u8]) -> bool {
    match stream.read(buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

/// Reading from `c` was paused for a full queue that has drained to half
/// of `max_queued` (hysteresis), so reading may go on.
pub(super) fn may_resume(c: &Conn, max_queued: usize) -> bool {
    c.read_paused && c.wq.len() <= max_queued / 2 && !matches!(c.phase, Phase::Finishing(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    #[test]
    fn nothing_unread_sees_waiting_input() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (sock, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut stream = Stream::Plain(mio::net::TcpStream::from_std(sock));
        let mut buf = [0u8; 64];
        // Nothing sent: closing now would send FIN.
        assert!(nothing_unread(&mut stream, &mut buf));
        // Input waiting: closing now would send RST.
        peer.write_all(b"after close").unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while nothing_unread(&mut stream, &mut buf) {
            assert!(Instant::now() < deadline, "the peer's bytes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        // That read took it; the peer's FIN alone is no reason to wait.
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(nothing_unread(&mut stream, &mut buf));
    }
}
