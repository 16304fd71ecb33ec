//! Dialing: a client connection made by the loop ([`Ctx::connect`]). The
//! request is built at once; the host is taken as given (an IP address, or
//! [`ClientRequest::with_addr`]) or resolved off the loop (`resolve.rs`);
//! each address is tried in turn within the connect timeout. Once TCP is
//! up, `client_handshake.rs` takes over.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::Interest;

use super::client_options::{
    client_handshake, new_key, upgrade_request, ClientOptions, ConnectError,
};
use super::clock::millis;
use super::conn::{Conn, Dial, Phase};
use super::core::{slot, Core};
use super::ctx::Ctx;
use super::id::ConnId;
use super::stream::Stream;
use super::url::WsUrl;

/// Where and how to connect: a `ws://` or `wss://` URL, optionally the
/// address to dial (no name resolution), and the [`ClientOptions`]
/// (subprotocols, headers, `Origin`, timeouts, TLS, permessage-deflate).
///
/// ```
/// use wsmio::{ClientOptions, ClientRequest};
///
/// let req = ClientRequest::new("wss://example.com/feed?v=2")?
///     .with_addr("127.0.0.1:8443".parse().unwrap())
///     .with_options(ClientOptions::default().with_header("Authorization", "Bearer t0k3n"));
/// assert_eq!(req.url().host, "example.com"); // SNI and Host header still say so
/// # Ok::<(), wsmio::ConnectError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientRequest {
    url: WsUrl,
    addr: Option<SocketAddr>,
    options: ClientOptions,
}

impl ClientRequest {
    /// A request for `url` with default options.
    pub fn new(url: &str) -> Result<ClientRequest, ConnectError> {
        Ok(ClientRequest {
            url: WsUrl::parse(url).map_err(ConnectError::Url)?,
            addr: None,
            options: ClientOptions::default(),
        })
    }

    /// Dial `addr` instead of resolving the URL's host (which still goes
    /// in the `Host` header and, for `wss://`, SNI).
    #[must_use = "a `with_*` setter returns the changed request"]
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Set the options.
    #[must_use = "a `with_*` setter returns the changed request"]
    pub fn with_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The URL.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }
}

impl<S> Ctx<'_, S> {
    /// Connect to a WebSocket server from this loop: returns the new
    /// connection's id at once; [`Handler::open`](super::Handler::open)
    /// follows once the handshake completes (the server's `101` checked,
    /// RFC 6455 §4.1), or
    /// [`Handler::connect_failed`](super::Handler::connect_failed) with
    /// why not. A host name is resolved off the loop, on a helper thread
    /// (an IP address, or [`ClientRequest::with_addr`], is dialed at
    /// once). The connection then is like an accepted one: the same
    /// callbacks, sends (masked, RFC 6455 §5.3; a shared
    /// [`Frame`](super::Frame) is re-framed and masked for it), timers,
    /// backpressure, heartbeat and close handshake, under the loop's
    /// [`Config`](super::Config); it is one of [`Ctx::open_ids`] (so
    /// [`Ctx::broadcast`] reaches it too). From another thread:
    /// [`Handle::call_handler`](super::Handle::call_handler) (or
    /// [`Handle::call`](super::Handle::call)) with a closure that calls
    /// this. See [`Server::new`](super::Server::new) for an example.
    ///
    /// Fails at once only for a `wss://` URL without the `tls` feature,
    /// when no masking key could be drawn, or once the loop is shutting
    /// down ([`ConnectError::Aborted`]).
    pub fn connect(&mut self, req: ClientRequest) -> Result<ConnId, ConnectError> {
        self.core.connect(req)
    }
}

impl Core {
    /// Start a client connection (see [`Ctx::connect`]).
    pub fn connect(&mut self, req: ClientRequest) -> Result<ConnId, ConnectError> {
        let ClientRequest { url, addr, options } = req;
        if self.shutdown_requested || self.shutdown_at.is_some() {
            return Err(ConnectError::Aborted);
        }
        if url.secure && !cfg!(feature = "tls") {
            return Err(ConnectError::Tls("wss:// needs the `tls` feature".into()));
        }
        if self.registry.is_none() {
            return Err(ConnectError::Io(io::Error::other(
                "the loop has no registry",
            )));
        }
        let hs = client_handshake(new_key()?, &options);
        let request = upgrade_request(&hs, &url, &options);
        let deadline = self.now + millis(options.connect_timeout);
        let given = addr.or_else(|| literal_addr(&url));
        let authority = url.authority();
        let dial = Dial {
            url,
            options,
            hs,
            request,
            addrs: given.into_iter().collect(),
            last_error: None,
            deadline,
            attempt_deadline: deadline,
            head: Vec::new(),
            refusal: None,
            error: None,
        };
        let id = self.add_dialing(dial);
        if given.is_some() {
            self.dial_next(id);
        } else {
            self.resolve(id, authority);
        }
        Ok(id)
    }

    /// A slot for a new client connection, in its `Connecting` phase.
    fn add_dialing(&mut self, dial: Dial) -> ConnId {
        let entry = self.conns.vacant_entry();
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let id = ConnId {
            key: entry.key() as u32,
            gen,
        };
        let mut c = Conn::new(Stream::Unconnected, gen, self.now, dial.deadline);
        c.phase = Phase::Connecting(Box::new(dial));
        entry.insert(c);
        self.states.create(id.key as usize, gen);
        self.dialing += 1;
        self.arm_timer(id);
        id
    }

    /// Resolve `authority` off the loop (`resolve.rs`); the addresses
    /// come back at a later turn (`Core::take_resolved`).
    fn resolve(&mut self, id: ConnId, authority: String) {
        if let Err(e) = self.resolver.resolve(id, authority) {
            self.dial_failed(id, ConnectError::Resolve(e));
        }
    }

    /// Dial the addresses the resolver threads found since the last turn.
    pub fn take_resolved(&mut self) {
        loop {
            let conns = &self.conns;
            let alive = |id: ConnId| conns.get(id.key as usize).is_some_and(|c| c.gen == id.gen);
            let Some((id, addrs)) = self.resolver.take(alive) else {
                break;
            };
            self.resolved(id, addrs);
        }
    }

    /// The addresses of `id`'s host arrived: dial them.
    fn resolved(&mut self, id: ConnId, addrs: io::Result<Vec<SocketAddr>>) {
        let Some(Phase::Connecting(d)) = self.get_mut(id).map(|c| &mut c.phase) else {
            return; // gone meanwhile (timed out, closed)
        };
        match addrs {
            Ok(mut a) if !a.is_empty() => {
                a.reverse();
                d.addrs = a;
                self.dial_next(id);
            }
            Ok(_) => {
                let e = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
                self.dial_failed(id, ConnectError::Resolve(e));
            }
            Err(e) => self.dial_failed(id, ConnectError::Resolve(e)),
        }
    }

    /// Start a non-blocking connect to the next address; none left: fail.
    pub fn dial_next(&mut self, id: ConnId) {
        let Some(registry) = self.registry.as_ref() else {
            return;
        };
        let Some(c) = slot(&mut self.conns, id) else {
            return;
        };
        let Phase::Connecting(d) = &mut c.phase else {
            return;
        };
        if let Some(old) = c.stream.socket() {
            let _ = registry.deregister(old);
        }
        c.stream = Stream::Unconnected;
        while let Some(addr) = d.addrs.pop() {
            let mut sock = match mio::net::TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => {
                    d.last_error = Some(e);
                    continue;
                }
            };
            // Registered once, edge-triggered, for both directions: the
            // connect completes with a writable edge (or an error).
            let interest = Interest::READABLE | Interest::WRITABLE;
            match registry.register(&mut sock, id.token(), interest) {
                Ok(()) => {
                    c.stream = Stream::Plain(sock);
                    let left = d.deadline.saturating_sub(self.now);
                    d.attempt_deadline = self.now + left / (d.addrs.len() as u64 + 1);
                    self.arm_timer(id);
                    return;
                }
                Err(e) => d.last_error = Some(e),
            }
        }
        let e = d
            .last_error
            .take()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for the host"));
        self.dial_failed(id, ConnectError::Connect(e));
    }

    /// Note why client connection `id` failed before it opened and have
    /// it removed at the next flush (where `Handler::connect_failed` hears
    /// it). Nothing for a connection in another phase.
    pub fn dial_failed(&mut self, id: ConnId, e: ConnectError) {
        let Some(c) = self.get_mut(id) else { return };
        let (Phase::Connecting(d) | Phase::Requested(d)) = &mut c.phase else {
            return;
        };
        log::debug!("conn {id}: connect failed: {e}");
        d.error.get_or_insert(e);
        c.abort = true;
        self.mark_dirty(id);
    }
}

/// An I/O error of a client connection before it opened, typed: TLS
/// (rustls reports its errors inside `io::Error`), or the rest.
pub(crate) fn dial_io_error(e: io::Error) -> ConnectError {
    #[cfg(feature = "tls")]
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return ConnectError::Tls(t.to_string());
    }
    ConnectError::Io(e)
}

/// The URL's host as an address, when it is an IP literal (no resolution).
fn literal_addr(url: &WsUrl) -> Option<SocketAddr> {
    let ip: IpAddr = url.host.parse().ok()?;
    Some(SocketAddr::new(ip, url.port))
}
