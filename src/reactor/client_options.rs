//! What a client asks for and how its connect can fail, shared by both
//! clients (`BlockingClient`, and the loop's `Ctx::connect`): the options
//! ([`ClientOptions`]), the typed failure ([`ConnectError`]), and the
//! pieces of the opening handshake both build and read the same way (RFC
//! 6455 §4.1: the request, the refusal's status, headers and body).

use std::fmt;
use std::io;
use std::time::Duration;

#[cfg(feature = "deflate")]
use crate::proto::deflate::Compression;
#[cfg(feature = "deflate")]
use crate::proto::extension::DeflateConfig;
use crate::proto::handshake::ClientHandshake;
use crate::proto::Limits;

use super::url::{UrlError, WsUrl};

/// Largest response head read during the handshake.
pub(crate) const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// How a client connects: [`BlockingClient::connect`](super::BlockingClient::connect),
/// or [`Ctx::connect`](super::Ctx::connect) on the loop (through a
/// [`ClientRequest`](super::ClientRequest)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Subprotocols offered (`Sec-WebSocket-Protocol`), in preference order.
    pub protocols: Vec<String>,
    /// Extra request headers, e.g. `("Authorization", "Bearer …")`.
    pub headers: Vec<(String, String)>,
    /// The `Origin` header (browsers send the page's; default none).
    pub origin: Option<String>,
    /// Time to resolve and open the TCP connection (default 10 s; the
    /// resolved addresses are tried in turn, on the loop each within its
    /// share of the time left). Past it: [`ConnectError::Connect`] with
    /// `TimedOut`. The TLS and WebSocket handshakes then get
    /// `handshake_timeout`.
    pub connect_timeout: Duration,
    /// Time for the TLS and WebSocket handshakes (default 10 s).
    pub handshake_timeout: Duration,
    /// What the server may send (message and frame size, …). On the loop
    /// the loop's [`Config`](super::Config) limits apply instead, as for
    /// its server connections.
    pub limits: Limits,
    /// Most bytes of a refused handshake's body kept (default 4 KiB).
    pub max_refusal_body: usize,
    /// TLS for `wss://` (default: the platform's trusted roots, loaded at
    /// the first `wss://` connect).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Offer permessage-deflate (RFC 7692) with these settings (default
    /// none).
    #[cfg(feature = "deflate")]
    pub deflate: Option<DeflateConfig>,
    /// How messages are compressed once permessage-deflate is agreed (RFC
    /// 7692 §6: per message, the sender's choice; default
    /// `Compression::default()`).
    #[cfg(feature = "deflate")]
    pub compression: Compression,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            max_refusal_body: 4096,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "deflate")]
            deflate: None,
            #[cfg(feature = "deflate")]
            compression: Compression::default(),
        }
    }
}

impl ClientOptions {
    /// Set [`ClientOptions::protocols`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Add a request header to [`ClientOptions::headers`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set [`ClientOptions::origin`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Set [`ClientOptions::connect_timeout`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Set [`ClientOptions::handshake_timeout`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Set [`ClientOptions::limits`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Set [`ClientOptions::max_refusal_body`].
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_max_refusal_body(mut self, bytes: usize) -> Self {
        self.max_refusal_body = bytes;
        self
    }

    /// Set [`ClientOptions::tls`].
    #[cfg(feature = "tls")]
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_tls(mut self, tls: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Set [`ClientOptions::deflate`].
    #[cfg(feature = "deflate")]
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Set [`ClientOptions::compression`].
    #[cfg(feature = "deflate")]
    #[must_use = "a `with_*` setter returns the changed options"]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
}

/// Why a connect failed: [`BlockingClient::connect`](super::BlockingClient::connect)'s
/// error, and what [`Handler::connect_failed`](super::Handler::connect_failed)
/// is told on the loop.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not a WebSocket URL.
    Url(UrlError),
    /// The host name did not resolve.
    Resolve(io::Error),
    /// No resolved address accepted the connection.
    Connect(io::Error),
    /// A handshake (TLS or WebSocket) took longer than allowed.
    Timeout,
    /// TLS failed (or `wss://` without the `tls` feature).
    Tls(String),
    /// The server answered the upgrade with another status: its status,
    /// headers and (bounded) body.
    Refused {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// The body, at most `max_refusal_body` bytes.
        body: String,
    },
    /// A `101` that breaks RFC 6455 §4.1 (wrong accept key, an extension
    /// or subprotocol not offered, …).
    Handshake(&'static str),
    /// The connection failed during the handshake.
    Io(io::Error),
    /// The loop closed it before the handshake completed
    /// ([`Ctx::close`](super::Ctx::close), or a shutdown).
    Aborted,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => write!(f, "bad URL: {e}"),
            ConnectError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            ConnectError::Connect(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Timeout => f.write_str("handshake timed out"),
            ConnectError::Tls(e) => write!(f, "TLS: {e}"),
            ConnectError::Refused { status, body, .. } => {
                write!(f, "refused with HTTP {status}: {}", body.trim())
            }
            ConnectError::Handshake(why) => write!(f, "bad handshake response: {why}"),
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Aborted => f.write_str("closed before the handshake completed"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A fresh `Sec-WebSocket-Key` (RFC 6455 §4.1: 16 random bytes, "randomly
/// selected" per connection).
pub(crate) fn new_key() -> Result<[u8; 16], ConnectError> {
    let mut key = [0u8; 16];
    getrandom::getrandom(&mut key)
        .map_err(|e| ConnectError::Io(io::Error::other(e.to_string())))?;
    Ok(key)
}

/// The client's side of the handshake for `options` (subprotocols, and the
/// permessage-deflate offer with the `deflate` feature).
pub(crate) fn client_handshake(key: [u8; 16], options: &ClientOptions) -> ClientHandshake {
    let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
    #[cfg(feature = "deflate")]
    if let Some(d) = &options.deflate {
        return ClientHandshake::with_deflate(key, &protocols, d);
    }
    ClientHandshake::new(key, &protocols)
}

/// The upgrade request's bytes (RFC 6455 §4.1): the handshake's headers,
/// then the application's extra headers and `Origin`.
pub(crate) fn upgrade_request(
    hs: &ClientHandshake,
    url: &WsUrl,
    options: &ClientOptions,
) -> Vec<u8> {
    let mut extra: Vec<(&str, &str)> = options
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Some(o) = &options.origin {
        extra.push(("Origin", o));
    }
    hs.request(&url.host_header(), &url.target, &extra)
}

/// The status of a response head, if it parses.
pub(crate) fn status_of(head: &[u8]) -> Option<u16> {
    let mut hbuf = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hbuf);
    resp.parse(head).ok()?;
    resp.code
}

/// A refusal being read: the response's status and headers, the body so
/// far, and how much of it is wanted (its `Content-Length`, at most
/// `max_refusal_body`).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub want: usize,
}

impl Refusal {
    /// The refusal of response head `head`; `body`: bytes read past it.
    pub fn new(head: &[u8], body: Vec<u8>, max_body: usize) -> Refusal {
        let mut hbuf = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hbuf);
        let _ = resp.parse(head);
        let status = resp.code.unwrap_or(0);
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_string(), value)
            })
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        // RFC 9112 §6.3: 1xx, 204 and 304 have no body, whatever they say.
        let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
        let want = if bodiless {
            0
        } else {
            length.unwrap_or(max_body).min(max_body)
        };
        Refusal {
            status,
            headers,
            body,
            want,
        }
    }

    /// Take `data` (up to what is wanted); `true` once the body is complete.
    pub fn push(&mut self, data: &[u8]) -> bool {
        let room = self.want.saturating_sub(self.body.len());
        self.body.extend_from_slice(&data[..data.len().min(room)]);
        self.done()
    }

    /// The wanted body is in.
    pub fn done(&self) -> bool {
        self.body.len() >= self.want
    }

    /// The typed error, the body cut to what was wanted.
    pub fn into_error(mut self) -> ConnectError {
        self.body.truncate(self.want);
        ConnectError::Refused {
            status: self.status,
            headers: self.headers,
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_waits_for_its_content_length_and_no_more() {
        let mut r = Refusal::new(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\n",
            Vec::new(),
            4096,
        );
        assert!(!r.push(b"no"));
        assert!(r.push(b"pe and more"));
        assert!(
            matches!(r.into_error(), ConnectError::Refused { status: 403, body, .. } if body == "nope")
        );
        // No length: up to the bound (or until the server closes).
        let r = Refusal::new(b"HTTP/1.1 401 Unauthorized\r\n\r\n", Vec::new(), 16);
        assert_eq!(r.want, 16);
        // RFC 9112 §6.3: 1xx, 204 and 304 have no body.
        for head in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            assert!(Refusal::new(head, Vec::new(), 4096).done());
        }
    }
}
