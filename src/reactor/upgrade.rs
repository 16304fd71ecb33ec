//! The opening handshake (RFC 6455 §4.2): a complete request head becomes an
//! upgrade (the `101` response, then frames), a plain HTTP response, or a
//! rejection; each of the latter two ends the connection.

use super::conn::Phase;
use super::core::{slot, Ctx};
use super::handler::{Handler, Upgrade};
use super::id::ConnId;
use super::read::feed;
use super::server::Server;
use crate::proto::handshake::{
    accept_response, find_head_end, parse_request, rejection_response, validate_upgrade,
    HeadBuffer, Rejection,
};

impl Server {
    /// The `n` bytes just read into the shared buffer belong to the request
    /// head (bounded by `max_head_size`): once it is complete, answer it.
    pub(super) fn collect_head<H: Handler>(&mut self, id: ConnId, n: usize, handler: &mut H) {
        let max = self.core.config.max_head_size;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Handshake { head, .. } = &mut c.phase else {
            return;
        };
        match head {
            None => {
                // The usual case: the whole head came in one read. Parse it
                // where it lies; nothing is allocated to collect it.
                match find_head_end(&self.read_buf[..n], 0) {
                    Some(end) if end <= max => {
                        let mut buf = std::mem::take(&mut self.read_buf);
                        let (head, rest) = buf[..n].split_at_mut(end);
                        self.handshake(id, head, rest, handler);
                        self.read_buf = buf;
                    }
                    _ => {
                        let mut buf = Box::<HeadBuffer>::default();
                        let r = buf.push(&self.read_buf[..n], max);
                        *head = Some(buf);
                        if let Err(rej) = r {
                            self.reject(id, &rej, handler);
                        }
                    }
                }
            }
            Some(buf) => match buf.push(&self.read_buf[..n], max) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    let (head, mut rest) = std::mem::take(buf).split_off_rest(end);
                    self.handshake(id, &head, &mut rest, handler);
                }
                Err(rej) => self.reject(id, &rej, handler),
            },
        }
    }

    pub(super) fn reject<H: Handler>(&mut self, id: ConnId, rej: &Rejection, handler: &mut H) {
        log::debug!("conn {id}: handshake rejected: {rej}");
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        handler.rejected(&mut ctx, rej.status, rej.reason);
        self.respond(id, &rejection_response(rej));
    }

    fn respond(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        c.wq.push_bytes(&[bytes], &mut self.core.pool);
        self.core.finish(id, false);
    }

    /// A complete request head arrived (`rest`: bytes after it, already
    /// frames if the client pipelined them).
    fn handshake<H: Handler>(&mut self, id: ConnId, head: &[u8], rest: &mut [u8], handler: &mut H) {
        let req = match parse_request(head, &self.core.config.head_limits()) {
            Ok(r) => r,
            Err(rej) => return self.reject(id, &rej, handler),
        };
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        if !req.wants_websocket() {
            let resp = handler.http(&mut ctx, id, &req);
            return self.respond(id, &resp.to_bytes());
        }
        let key = match validate_upgrade(&req) {
            Ok(k) => k,
            Err(rej) => return self.reject(id, &rej, handler),
        };
        match handler.upgrade(&mut ctx, id, &req) {
            Upgrade::Reject(resp) => {
                log::debug!("conn {id}: upgrade refused by handler: {}", resp.status);
                self.respond(id, &resp.to_bytes());
            }
            Upgrade::Accept { protocol, headers } => {
                // RFC 6455 §4.2.2: only a subprotocol the client offered.
                if let Some(p) = &protocol {
                    if !req.protocols().any(|o| o == p) {
                        log::error!("conn {id}: handler selected unoffered subprotocol {p:?}");
                        return self.reject(
                            id,
                            &Rejection {
                                status: 500,
                                reason: "server selected a subprotocol not offered",
                            },
                            handler,
                        );
                    }
                }
                let extra: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let resp = accept_response(key, protocol.as_deref(), &extra);
                let now = self.core.now;
                let Some(c) = slot(&mut self.core.conns, id) else {
                    return;
                };
                // Written at once when possible: no queue buffer is taken.
                if c.wq
                    .write_through(&mut c.stream, &[&resp], &mut self.core.pool)
                    .is_err()
                {
                    c.abort = true;
                }
                c.phase = Phase::Open { pong_due: None };
                c.last_read = now;
                self.core.open_count += 1;
                self.core.mark_dirty(id);
                self.core.arm_timer(id);
                let mut ctx = Ctx {
                    core: &mut self.core,
                };
                handler.open(&mut ctx, id);
                // Frames that came in the same read as the head.
                if !rest.is_empty() {
                    feed(&mut self.core, handler, id, rest);
                }
            }
        }
    }
}
