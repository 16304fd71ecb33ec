//! The client's opening handshake on the loop (RFC 6455 §4.1): the
//! response head to the request `connect.rs` queued is collected (at most
//! `MAX_RESPONSE_HEAD` bytes) and checked by `proto::handshake`; a `101`
//! opens the connection (masked frames out, permessage-deflate if agreed),
//! any other status is a refusal whose bounded body is read before the
//! handler hears it (`Handler::connect_failed`).

use super::client_options::{status_of, ClientOptions, ConnectError, Refusal, MAX_RESPONSE_HEAD};
use super::conn::Phase;
use super::core::{slot, Ctx};
use super::handler::Handler;
use super::id::ConnId;
use super::read::feed;
use super::server::Server;
use crate::proto::handshake::{find_head_end, Agreement, HeadLimits};
use crate::proto::{Receiver, Role, Sender};

impl Server {
    /// The `n` bytes just read into the shared buffer answer our upgrade
    /// request: the response head, then a refusal's body or frames.
    pub(super) fn response_input<H: Handler>(&mut self, id: ConnId, n: usize, handler: &mut H) {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Requested(d) = &mut c.phase else {
            return;
        };
        let data = &self.read_buf[..n];
        if let Some(r) = &mut d.refusal {
            if r.push(data) {
                self.remove(id, handler);
            }
            return;
        }
        let scanned = d.head.len();
        d.head.extend_from_slice(data);
        let Some(end) = find_head_end(&d.head, scanned) else {
            if d.head.len() > MAX_RESPONSE_HEAD {
                d.error = Some(ConnectError::Handshake("response head too large"));
                self.remove(id, handler);
            }
            return;
        };
        let mut rest = d.head.split_off(end);
        let head = std::mem::take(&mut d.head);
        // §4.1: any status but 101 ends the handshake; the handler gets the
        // status, headers and body.
        if status_of(&head) != Some(101) {
            let mut r = Refusal::new(&head, Vec::new(), d.options.max_refusal_body);
            let done = r.push(&rest);
            d.refusal = Some(r);
            if done {
                self.remove(id, handler);
            }
            return;
        }
        match d.hs.validate(&head, &HeadLimits::default()) {
            Ok(agreed) => self.open_client(id, &agreed, &mut rest, handler),
            Err(rej) => {
                d.error = Some(ConnectError::Handshake(rej.reason));
                self.remove(id, handler);
            }
        }
    }

    /// The server switched protocols: the connection is open. Frames that
    /// came with the response run through the protocol core right after
    /// `open`.
    fn open_client<H: Handler>(
        &mut self,
        id: ConnId,
        agreed: &Agreement,
        rest: &mut [u8],
        handler: &mut H,
    ) {
        let now = self.core.now;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return;
        };
        let Phase::Requested(d) = &c.phase else {
            return;
        };
        (c.rx, c.tx) = client_endpoints(agreed, &d.options);
        c.phase = Phase::Open { pong_due: None };
        c.last_read = now;
        self.core.dialing -= 1;
        self.core.open_count += 1;
        self.core.arm_timer(id);
        handler.open(&mut Ctx::new(&mut self.core), id);
        if !rest.is_empty() {
            feed(&mut self.core, handler, id, rest);
        }
    }
}

/// The client's receiver and sender (RFC 6455 §5.3: every frame masked),
/// with the permessage-deflate parameters the server agreed to, if any.
fn client_endpoints(agreed: &Agreement, options: &ClientOptions) -> (Receiver, Sender) {
    #[cfg(feature = "deflate")]
    if let Some(p) = agreed.deflate {
        return (
            Receiver::with_deflate(Role::Client, p),
            Sender::with_deflate(Role::Client, p, options.compression),
        );
    }
    let _ = (agreed, options);
    (Receiver::new(Role::Client), Sender::new(Role::Client))
}
