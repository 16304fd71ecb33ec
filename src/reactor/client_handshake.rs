//! The client's opening handshake on the loop (RFC 6455 §4.1): once the
//! socket `connect.rs` dialed is connected, TLS is set up for `wss://`
//! (SNI from the URL's host) and the upgrade request queued; the
//! response head is collected (at most
//! `MAX_RESPONSE_HEAD` bytes) and checked by `proto::handshake`; a `101`
//! opens the connection (masked frames out, permessage-deflate if agreed),
//! any other status is a refusal whose bounded body is read before the
//! handler hears it (`Handler::connect_failed`).

use std::io;

use super::client_options::{status_of, ClientOptions, ConnectError, Refusal, MAX_RESPONSE_HEAD};
use super::clock::millis;
use super::conn::Dial;
use super::conn::Phase;
use super::core::slot;
use super::ctx::Ctx;
use super::handler::Handler;
use super::id::ConnId;
use super::read::feed;
use super::server::Server;
use super::stream::Stream;
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
        if let Some(p) = &agreed.protocol {
            self.core.protocols.insert(id, p.as_str().into());
        }
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

impl Server {
    /// A connecting socket reported readiness: find out whether the
    /// connect completed. Connected: set up TLS for `wss://`, queue the
    /// upgrade request and wait for the response (`true`: flush it now).
    /// Failed: try the next address.
    pub(super) fn dialed(&mut self, id: ConnId) -> bool {
        let Some(c) = slot(&mut self.core.conns, id) else {
            return false;
        };
        let Stream::Plain(sock) = &c.stream else {
            return false; // still resolving
        };
        let error = match sock.take_error() {
            Ok(None) => match sock.peer_addr() {
                Ok(_) => None,
                // Not yet: a later edge tells.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(e) => Some(e),
            },
            Ok(Some(e)) | Err(e) => Some(e),
        };
        if let Some(e) = error {
            if let Phase::Connecting(d) = &mut c.phase {
                log::debug!("conn {id}: connect: {e}");
                d.last_error = Some(e);
            }
            self.core.dial_next(id);
            return false;
        }
        match self.upgrade_request(id) {
            Ok(()) => true,
            Err(e) => {
                self.core.dial_failed(id, e);
                false
            }
        }
    }

    /// TCP is up: TLS around it for `wss://`, the request queued, the
    /// handshake's deadline set.
    fn upgrade_request(&mut self, id: ConnId) -> Result<(), ConnectError> {
        let now = self.core.now;
        let platform = &mut self.core.platform_tls;
        let Some(c) = slot(&mut self.core.conns, id) else {
            return Ok(());
        };
        let Phase::Connecting(d) = &mut c.phase else {
            return Ok(());
        };
        let Stream::Plain(sock) = std::mem::replace(&mut c.stream, Stream::Unconnected) else {
            return Ok(());
        };
        // Small frames must not wait for Nagle's algorithm.
        let _ = sock.set_nodelay(true);
        c.stream = secure(sock, d, platform)?;
        c.wq.push_bytes(&[&d.request], &mut self.core.pool);
        d.request = Vec::new();
        d.deadline = now + millis(d.options.handshake_timeout);
        let Phase::Connecting(d) = std::mem::replace(&mut c.phase, Phase::Open { pong_due: None })
        else {
            return Ok(());
        };
        c.phase = Phase::Requested(d);
        self.core.arm_timer(id);
        Ok(())
    }
}

/// The stream for a connected socket: TLS for `wss://` (the options' client
/// configuration, else the platform's roots, loaded once per loop).
#[cfg(feature = "tls")]
fn secure(
    sock: mio::net::TcpStream,
    d: &Dial,
    platform: &mut Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Stream, ConnectError> {
    use super::tls::TlsStream;
    use super::tls_client::{client_config, platform_roots};
    if !d.url.secure {
        return Ok(Stream::Plain(sock));
    }
    let tls = |e: &dyn std::fmt::Display| ConnectError::Tls(e.to_string());
    let config = match (&d.options.tls, platform.as_ref()) {
        (Some(c), _) | (None, Some(c)) => c.clone(),
        (None, None) => {
            let c = platform_roots()
                .and_then(client_config)
                .map_err(|e| tls(&e))?;
            platform.insert(c).clone()
        }
    };
    // RFC 6066 §3: SNI carries the URL's host name (rustls sends none for
    // an IP address).
    let name = rustls::pki_types::ServerName::try_from(d.url.host.clone()).map_err(|e| tls(&e))?;
    let stream = TlsStream::client(sock, &config, name).map_err(|e| tls(&e))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Without the `tls` feature (`Core::connect` refuses `wss://` up front).
#[cfg(not(feature = "tls"))]
fn secure(sock: mio::net::TcpStream, d: &Dial, _: &mut ()) -> Result<Stream, ConnectError> {
    match d.url.secure {
        true => Err(ConnectError::Tls("wss:// needs the `tls` feature".into())),
        false => Ok(Stream::Plain(sock)),
    }
}
