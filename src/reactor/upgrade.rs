//! The opening handshake (RFC 6455 §4.2): a complete request head becomes an
//! upgrade (the `101` response, then frames), a plain HTTP response, or a
//! rejection; each of the latter two ends the connection. With
//! `Config::deflate`, a permessage-deflate offer is answered here too (RFC
//! 7692 §5). A request head that comes in pieces is collected in a buffer
//! counted against `max_buffered_bytes`; an answer to `HEAD` is sent
//! without its body.

use super::conn::Phase;
use super::core::{slot, Core, Ctx};
use super::handler::{Handler, Upgrade};
use super::id::ConnId;
use super::read::feed;
use super::server::Server;
use crate::proto::extension::Accepted;
use crate::proto::handshake::{
    accept_response_ext, find_head_end, parse_request, rejection_response, validate_upgrade,
    HeadBuffer, Rejection, Request,
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
                        let held = buf.capacity();
                        *head = Some(buf);
                        self.core.held_changed(0, held);
                        if let Err(rej) = r {
                            self.reject(id, &rej, handler);
                        }
                    }
                }
            }
            Some(buf) => {
                let before = buf.capacity();
                match buf.push(&self.read_buf[..n], max) {
                    Ok(None) => {
                        let after = buf.capacity();
                        self.core.held_changed(before, after);
                    }
                    Ok(Some(end)) => {
                        let (head, mut rest) = std::mem::take(buf).split_off_rest(end);
                        // The head and what followed it leave the buffer.
                        self.core.held_changed(before, 0);
                        self.handshake(id, &head, &mut rest, handler);
                    }
                    Err(rej) => {
                        let after = buf.capacity();
                        self.core.held_changed(before, after);
                        self.reject(id, &rej, handler);
                    }
                }
            }
        }
    }

    /// Refuse the handshake of `id` with `rej` (its request head is not
    /// parsed, or is not to be trusted: the full response goes out).
    pub(super) fn reject<H: Handler>(&mut self, id: ConnId, rej: &Rejection, handler: &mut H) {
        self.refuse_request(id, rej, false, handler);
    }

    /// Refuse with `rej`; `head_only`: the request was `HEAD`, so the
    /// response goes without its body (RFC 9110 §9.3.2).
    fn refuse_request<H: Handler>(
        &mut self,
        id: ConnId,
        rej: &Rejection,
        head_only: bool,
        handler: &mut H,
    ) {
        log::debug!("conn {id}: handshake rejected: {rej}");
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        handler.rejected(&mut ctx, rej.status, rej.reason);
        self.respond(id, rejection_response(rej), head_only);
    }

    /// Queue the HTTP response `bytes` (without its body if `head_only`)
    /// and finish: the connection ends once it is written.
    fn respond(&mut self, id: ConnId, mut bytes: Vec<u8>, head_only: bool) {
        if head_only {
            // RFC 9110 §9.3.2: the GET response's head (Content-Length
            // included), no content. Header values cannot hold CR or LF
            // (`push_header`), so the first blank line ends the head.
            if let Some(end) = find_head_end(&bytes, 0) {
                bytes.truncate(end);
            }
        }
        self.respond_bytes(id, &bytes);
    }

    fn respond_bytes(&mut self, id: ConnId, bytes: &[u8]) {
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
        let head_only = req.method == "HEAD";
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        if !req.wants_websocket() {
            let resp = handler.http(&mut ctx, id, &req);
            return self.respond(id, resp.to_bytes(), head_only);
        }
        let key = match validate_upgrade(&req) {
            Ok(k) => k,
            Err(rej) => return self.refuse_request(id, &rej, head_only, handler),
        };
        // Upgraded connections that came since this one was accepted may
        // have filled the slots (handshakes count apart).
        if self.core.open_count >= self.core.config.max_connections {
            let rej = Rejection {
                status: 503,
                reason: "connection limit reached",
            };
            return self.refuse_request(id, &rej, false, handler);
        }
        // RFC 7692 §5: the extension is settled before the handler sees
        // the request (a malformed offer is refused here).
        let deflate = match negotiate(&self.core, &req) {
            Ok(d) => d,
            Err(rej) => return self.refuse_request(id, &rej, head_only, handler),
        };
        let mut ctx = Ctx {
            core: &mut self.core,
        };
        match handler.upgrade(&mut ctx, id, &req) {
            Upgrade::Reject(resp) => {
                log::debug!("conn {id}: upgrade refused by handler: {}", resp.status);
                self.respond(id, resp.to_bytes(), false);
            }
            Upgrade::Accept { protocol, headers } => {
                // RFC 6455 §4.2.2: only a subprotocol the client offered.
                if let Some(p) = &protocol {
                    if !req.protocols().any(|o| o == p) {
                        log::error!("conn {id}: handler selected unoffered subprotocol {p:?}");
                        let rej = Rejection {
                            status: 500,
                            reason: "server selected a subprotocol not offered",
                        };
                        return self.refuse_request(id, &rej, false, handler);
                    }
                }
                let extra: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let extensions = deflate.as_ref().map(|a| a.response.header_value());
                let resp =
                    accept_response_ext(key, protocol.as_deref(), extensions.as_deref(), &extra);
                self.open(id, &resp, deflate.as_ref(), rest, handler);
            }
        }
    }

    /// Switch `id` to frames: queue the `101` (`resp`), set up the
    /// protocol with the agreed permessage-deflate parameters, if any, and
    /// tell the handler; then run the frames that came with the head.
    fn open<H: Handler>(
        &mut self,
        id: ConnId,
        resp: &[u8],
        deflate: Option<&Accepted>,
        rest: &mut [u8],
        handler: &mut H,
    ) {
        let now = self.core.now;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        // Queued like every reply: written right after this read, with
        // whatever `open` and the pipelined frames produce.
        c.wq.push_bytes(&[resp], &mut self.core.pool);
        c.phase = Phase::Open { pong_due: None };
        c.last_read = now;
        #[cfg(feature = "deflate")]
        if let (Some(accepted), Some(z)) = (deflate, &self.core.deflate) {
            (c.rx, c.tx) = super::deflate::endpoints(accepted, &z.settings);
            c.deflate_peer = Some(super::compressed_frame::DeflatePeer::new());
        }
        #[cfg(not(feature = "deflate"))]
        let _ = deflate;
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

/// The permessage-deflate answer to `req` (RFC 7692 §5): `None` when the
/// server does not offer it (no `Config::deflate`, or built without the
/// `deflate` feature) or no offer is acceptable.
fn negotiate(core: &Core, req: &Request) -> Result<Option<Accepted>, Rejection> {
    #[cfg(feature = "deflate")]
    if let Some(z) = &core.deflate {
        return super::deflate::negotiate(&z.settings, req);
    }
    let _ = (core, req);
    Ok(None)
}
