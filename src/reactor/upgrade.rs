//! The opening handshake (RFC 6455 §4.2): a complete request head becomes an
//! upgrade (the `101` response, then frames), a plain HTTP response, or a
//! rejection; each of the latter two ends the connection. With
//! `Config::deflate`, a permessage-deflate offer is answered here too (RFC
//! 7692 §5). A request head that comes in pieces is collected in a buffer
//! counted against `max_buffered_bytes`; an answer to `HEAD` is sent
//! without its body.

use super::conn::{Deferred, Phase};
use super::core::{slot, Core};
use super::ctx::Ctx;
use super::handler::{Handler, Upgrade};
use super::id::ConnId;
use super::read::feed;
use super::server::Server;
use crate::proto::extension::Accepted;
use crate::proto::handshake::{
    accept_response_ext, find_head_end, parse_request, rejection_response, validate_upgrade,
    HeadBuffer, HttpRequest, Rejection,
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
        handler.rejected(&mut Ctx::new(&mut self.core), rej.status, rej.reason);
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
        if !req.wants_websocket() {
            let resp = handler.http(&mut Ctx::new(&mut self.core), id, &req);
            return self.respond(id, resp.to_bytes(), head_only);
        }
        if let Err(rej) = validate_upgrade(&req) {
            return self.refuse_request(id, &rej, head_only, handler);
        }
        // Upgraded connections that came since this one was accepted may
        // have filled the slots (handshakes count apart).
        if let Err(rej) = self.room_for_one_more() {
            return self.refuse_request(id, &rej, false, handler);
        }
        // RFC 7692 §5: the extension is settled before the handler sees
        // the request (a malformed offer is refused here).
        let deflate = match negotiate(&self.core, &req) {
            Ok(d) => d,
            Err(rej) => return self.refuse_request(id, &rej, head_only, handler),
        };
        match handler.upgrade(&mut Ctx::new(&mut self.core), id, &req) {
            Upgrade::Defer => self.defer(id, req, deflate, head.len(), rest),
            answer => self.carry_out(id, &req, answer, deflate.as_ref(), rest, handler),
        }
    }

    /// `503` when the upgraded connections fill `max_connections`.
    fn room_for_one_more(&self) -> Result<(), Rejection> {
        if self.core.open_count < self.core.config.max_connections {
            return Ok(());
        }
        Err(Rejection {
            status: 503,
            reason: "connection limit reached",
        })
    }

    /// Carry out the handler's answer to the upgrade request `req` (now,
    /// or later for a deferred one).
    fn carry_out<H: Handler>(
        &mut self,
        id: ConnId,
        req: &HttpRequest,
        answer: Upgrade,
        deflate: Option<&Accepted>,
        rest: &mut [u8],
        handler: &mut H,
    ) {
        let (protocol, headers) = match answer {
            Upgrade::Accept { protocol, headers } => (protocol, headers),
            Upgrade::Reject(resp) => {
                log::debug!("conn {id}: upgrade refused by handler: {}", resp.status);
                return self.respond(id, resp.to_bytes(), false);
            }
            // Deferring again is refused by `Core::answer_upgrade`.
            Upgrade::Defer => return,
        };
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
        let key = match validate_upgrade(req) {
            Ok(k) => k,
            Err(rej) => return self.refuse_request(id, &rej, false, handler),
        };
        let extra: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let extensions = deflate.map(|a| a.response.header_value());
        let resp = accept_response_ext(key, protocol.as_deref(), extensions.as_deref(), &extra);
        self.open(id, &resp, deflate, rest, handler);
    }

    /// The handler deferred its answer: keep what carrying it out needs
    /// (counted against `max_buffered_bytes`) until `Ctx::answer_upgrade`
    /// or the handshake's deadline.
    fn defer(
        &mut self,
        id: ConnId,
        req: HttpRequest,
        deflate: Option<Accepted>,
        head_len: usize,
        rest: &[u8],
    ) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Handshake { deadline, .. } = c.phase else {
            return;
        };
        let rest = rest.to_vec();
        let held = head_len + rest.capacity();
        c.phase = Phase::Deferred(Box::new(Deferred {
            req,
            deflate,
            rest,
            held,
            head_len,
            deadline,
            answer: None,
        }));
        self.core.held_changed(0, held);
        self.core.arm_timer(id);
    }

    /// Input from a client whose upgrade waits for its answer: kept (up to
    /// `max_head_size`) to be run as frames once it is accepted.
    pub(super) fn deferred_input<H: Handler>(&mut self, id: ConnId, n: usize, handler: &mut H) {
        let max = self.core.config.max_head_size;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Deferred(d) = &mut c.phase else {
            return;
        };
        if d.rest.len() + n > max {
            let rej = Rejection {
                status: 400,
                reason: "data sent before the upgrade was answered",
            };
            return self.reject(id, &rej, handler);
        }
        let before = d.held;
        d.rest.extend_from_slice(&self.read_buf[..n]);
        d.held = d.head_len + d.rest.capacity();
        let after = d.held;
        self.core.held_changed(before, after);
    }

    /// Carry out the answers given to deferred upgrades (`Core::answered`),
    /// those given meanwhile (by `Handler::open`, say) included.
    pub(super) fn answer_upgrades<H: Handler>(&mut self, handler: &mut H) {
        while !self.core.answered.is_empty() {
            let ids = std::mem::take(&mut self.core.answered);
            for id in ids {
                self.answer_deferred(id, handler);
            }
        }
    }

    fn answer_deferred<H: Handler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Deferred(d) = &mut c.phase else {
            return;
        };
        let (Some(answer), deadline) = (d.answer.take(), d.deadline) else {
            return;
        };
        // Back to the handshake phase, holding nothing, for the answer.
        let head = Phase::Handshake {
            head: None,
            deadline,
        };
        let Phase::Deferred(mut d) = std::mem::replace(&mut c.phase, head) else {
            return;
        };
        self.core.held_changed(d.held, 0);
        if matches!(answer, Upgrade::Accept { .. }) {
            if let Err(rej) = self.room_for_one_more() {
                return self.refuse_request(id, &rej, false, handler);
            }
        }
        let deflate = d.deflate.take();
        let mut rest = std::mem::take(&mut d.rest);
        self.carry_out(id, &d.req, answer, deflate.as_ref(), &mut rest, handler);
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
        let mut ctx = Ctx::new(&mut self.core);
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
fn negotiate(core: &Core, req: &HttpRequest) -> Result<Option<Accepted>, Rejection> {
    #[cfg(feature = "deflate")]
    if let Some(z) = &core.deflate {
        return super::deflate::negotiate(&z.settings, req);
    }
    let _ = (core, req);
    Ok(None)
}
