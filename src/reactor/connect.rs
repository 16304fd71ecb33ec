//! Dialing: a client connection made by the loop ([`Ctx::connect`]). The
//! request is built at once; the host is taken as given (an IP address, or
//! [`ClientRequest::with_addr`]) or resolved off the loop, on a helper
//! thread that posts the addresses back through the loop's command queue;
//! each address is tried in turn within the connect timeout; once TCP is
//! up, TLS is set up for `wss://` and the upgrade request (RFC 6455 §4.1)
//! is queued. The response is read in `client_handshake.rs`.
//!
//! [`Ctx::connect`]: super::Ctx::connect

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use mio::Interest;

use super::client_options::{
    client_handshake, new_key, upgrade_request, ClientOptions, ConnectError, Refusal,
};
use super::clock::millis;
use super::conn::{Conn, Phase};
use super::core::{slot, Core};
use super::id::ConnId;
use super::server::Server;
use super::stream::Stream;
use super::timer::Millis;
use super::url::WsUrl;
use crate::proto::handshake::ClientHandshake;

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

/// What a client connection needs until its handshake is done: the
/// `Connecting` and `Requested` phases' state (see `conn.rs`).
#[derive(Debug)]
pub(crate) struct Dial {
    pub url: WsUrl,
    pub options: ClientOptions,
    /// Our side of the handshake: checks the response.
    pub hs: ClientHandshake,
    /// The upgrade request, queued once TCP is up.
    pub request: Vec<u8>,
    /// Addresses still to try, the next one last.
    pub addrs: Vec<SocketAddr>,
    /// Why the last address failed.
    pub last_error: Option<io::Error>,
    /// The phase's deadline: the connect timeout, then the handshake's.
    pub deadline: Millis,
    /// The response head so far (at most `MAX_RESPONSE_HEAD` bytes).
    pub head: Vec<u8>,
    /// A response other than `101`: its body being read.
    pub refusal: Option<Refusal>,
    /// Why it failed, told to `Handler::connect_failed` at removal.
    pub error: Option<ConnectError>,
}

impl Dial {
    /// Why the handshake did not complete: the error noted, else the
    /// refusal read so far, else a connection cut during the handshake.
    pub fn failure(&mut self) -> ConnectError {
        if let Some(e) = self.error.take() {
            return e;
        }
        if let Some(r) = self.refusal.take() {
            return r.into_error();
        }
        ConnectError::Handshake("connection closed during the handshake")
    }
}

impl Core {
    /// Start a client connection (see [`Ctx::connect`](super::Ctx::connect)).
    pub fn connect(&mut self, req: ClientRequest) -> Result<ConnId, ConnectError> {
        let ClientRequest { url, addr, options } = req;
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

    /// Resolve `authority` on a helper thread (`getaddrinfo` blocks); the
    /// addresses come back as a command (`Core::resolved`).
    fn resolve(&mut self, id: ConnId, authority: String) {
        let Some(handle) = self.handle.clone() else {
            return self.dial_failed(id, ConnectError::Resolve(io::Error::other("no handle")));
        };
        let spawned = std::thread::Builder::new()
            .name("wsmio-resolve".into())
            .spawn(move || {
                let addrs = authority.to_socket_addrs().map(Iterator::collect);
                handle.post_resolved(id, addrs);
            });
        if let Err(e) = spawned {
            self.dial_failed(id, ConnectError::Resolve(e));
        }
    }

    /// The addresses of `id`'s host arrived: dial them.
    pub fn resolved(&mut self, id: ConnId, addrs: io::Result<Vec<SocketAddr>>) {
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
    fn dial_next(&mut self, id: ConnId) {
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

/// The URL's host as an address, when it is an IP literal (no resolution).
fn literal_addr(url: &WsUrl) -> Option<SocketAddr> {
    let ip: IpAddr = url.host.parse().ok()?;
    Some(SocketAddr::new(ip, url.port))
}
