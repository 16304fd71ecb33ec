//! The opening handshake (RFC 6455 §4): the server reading a client's
//! request and answering it, and the client building a request and checking
//! the server's answer.
//!
//! The request head is collected in a bounded buffer. [`find_head_end`]
//! resumes its search where the last one stopped, so a head arriving one byte
//! per read costs linear time, and `httparse` runs once, on the complete
//! head.
//!
//! permessage-deflate (RFC 7692) is negotiated here too: the server answers
//! the client's offers with [`negotiate_deflate`] and
//! [`accept_response_ext`]; a client offers it with
//! [`ClientHandshake::with_deflate`] and learns the agreed parameters from
//! [`ClientHandshake::validate`]. The decisions are `proto::extension`'s.

use super::extension::{negotiate_client, negotiate_server, Accepted, DeflateConfig};
use super::extension::{DeflateParams, Offer};
use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3: the GUID appended to the key for `Sec-WebSocket-Accept`.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Default maximum size of a request head (request line and headers).
pub const DEFAULT_MAX_HEAD_SIZE: usize = 8 * 1024;
/// Default maximum number of request headers.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Limits on the request head. Over either: `431`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head in bytes, up to and including the blank line.
    pub max_head_size: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// A refused handshake: the HTTP status and a one-line reason, sent as the
/// response before the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code.
    pub status: u16,
    /// One-line reason (also the response body).
    pub reason: &'static str,
}

impl Rejection {
    const fn new(status: u16, reason: &'static str) -> Self {
        Rejection { status, reason }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Where the head ends (index just past `\r\n\r\n`), searching `buf` from
/// `scanned` — the length already searched by an earlier call — so that
/// repeated calls on a growing buffer are linear in total.
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let start = scanned.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

/// Collects a request (or response) head from reads of any size, bounded
/// by [`HeadLimits::max_head_size`].
#[derive(Debug, Default)]
pub struct HeadBuffer {
    buf: Vec<u8>,
    scanned: usize,
}

impl HeadBuffer {
    /// An empty buffer (allocates on the first push).
    pub fn new() -> Self {
        HeadBuffer::default()
    }

    /// Append `bytes`. Returns the length of the complete head once the
    /// blank line is in; bytes after it (the start of the frame stream) stay
    /// in the buffer, see [`HeadBuffer::split_off_rest`]. A head that grows
    /// past `max_head_size` without ending is refused with `431`.
    pub fn push(&mut self, bytes: &[u8], max_head_size: usize) -> Result<Option<usize>, Rejection> {
        self.buf.extend_from_slice(bytes);
        let found = find_head_end(&self.buf, self.scanned);
        self.scanned = self.buf.len();
        match found {
            Some(end) if end <= max_head_size => Ok(Some(end)),
            Some(_) => Err(Rejection::new(431, "request head too large")),
            None if self.buf.len() >= max_head_size => {
                Err(Rejection::new(431, "request head too large"))
            }
            None => Ok(None),
        }
    }

    /// Bytes collected so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes of memory the buffer holds (its capacity), for a server's
    /// accounting of input held across connections.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Split at `head_len`: returns the head, leaving the rest in `rest`.
    pub fn split_off_rest(mut self, head_len: usize) -> (Vec<u8>, Vec<u8>) {
        let rest = self.buf.split_off(head_len);
        (self.buf, rest)
    }
}

/// A parsed HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target, e.g. `/ws?token=abc`.
    pub path: String,
    /// Minor HTTP version (1 for HTTP/1.1).
    pub version: u8,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The old name of [`HttpRequest`] (renamed so that it is not confused with
/// the hub's `pubsub::protocol::Request`, and to pair with the reactor's
/// `HttpResponse`).
#[deprecated(since = "0.2.0", note = "renamed `HttpRequest`")]
pub type Request = HttpRequest;

impl HttpRequest {
    /// The first header named `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// All values of `name`, split at commas and trimmed (HTTP list syntax).
    pub fn header_tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Does the header `name` list `token` (case-insensitive)?
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    /// Path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// The query string: the target after its first `?` (`None` without
    /// one).
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The value of the first query parameter named `key`, decoded as
    /// browsers encode forms and `URLSearchParams` (the WHATWG URL
    /// Standard's `application/x-www-form-urlencoded` parser: `+` is a
    /// space, `%2B` a `+`, `%C3%A9` an `é`, invalid UTF-8 U+FFFD; see
    /// [`query`](super::query)). Names are compared decoded. Borrowed from
    /// the target when there is nothing to decode.
    ///
    /// ```
    /// use wsmio::proto::handshake::{parse_request, HeadLimits};
    ///
    /// let head = b"GET /ws?room=caf%C3%A9&who=a+b%2Bc&token=x HTTP/1.1\r\nHost: h\r\n\r\n";
    /// let req = parse_request(head, &HeadLimits::default()).unwrap();
    /// assert_eq!(req.query_param("room").as_deref(), Some("café"));
    /// assert_eq!(req.query_param("who").as_deref(), Some("a b+c"));
    /// assert_eq!(req.query_param("token").as_deref(), Some("x"));
    /// assert_eq!(req.query_param("nope"), None);
    /// ```
    pub fn query_param(&self, key: &str) -> Option<Cow<'_, str>> {
        super::query::pairs(self.query()?).find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Every query parameter, decoded as [`HttpRequest::query_param`]
    /// decodes them, in order.
    pub fn query_params(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        super::query::pairs(self.query().unwrap_or(""))
    }

    /// Does this request ask for a WebSocket upgrade at all? (Otherwise it is
    /// a plain HTTP request for the embedder's HTTP hook.)
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket") || self.header("sec-websocket-key").is_some()
    }

    /// Subprotocols offered by the client (§4.1 `Sec-WebSocket-Protocol`).
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.header_tokens("sec-websocket-protocol")
    }
}

/// Parse a complete head (`head` ends with the blank line).
pub fn parse_request(head: &[u8], limits: &HeadLimits) -> Result<HttpRequest, Rejection> {
    if head.len() > limits.max_head_size {
        return Err(Rejection::new(431, "request head too large"));
    }
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Rejection::new(400, "incomplete request head"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(431, "too many header fields"))
        }
        Err(_) => return Err(Rejection::new(400, "malformed request head")),
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request
    // without Host, with more than one Host, or with an invalid one. (The
    // Host check of the embedder, e.g. against DNS rebinding, relies on
    // there being exactly one value to check.)
    let mut hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Rejection::new(400, "more than one Host header")),
        (None, _) if req.version.unwrap_or(0) >= 1 => {
            return Err(Rejection::new(400, "missing Host header"))
        }
        // RFC 9110 §7.2 / RFC 3986 §3.2: host and port are visible ASCII
        // (international names travel as punycode).
        (Some(h), None) if h.value.is_empty() => {
            return Err(Rejection::new(400, "missing Host header"))
        }
        (Some(h), None) if h.value.iter().any(|b| !b.is_ascii_graphic()) => {
            return Err(Rejection::new(400, "invalid Host header"))
        }
        _ => {}
    }
    Ok(HttpRequest {
        method: req.method.unwrap_or_default().to_string(),
        path: req.path.unwrap_or_default().to_string(),
        version: req.version.unwrap_or(0),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
    })
}

/// Check an upgrade request against RFC 6455 §4.2.1 and return the client's
/// `Sec-WebSocket-Key`.
pub fn validate_upgrade(req: &HttpRequest) -> Result<&str, Rejection> {
    // §4.2.1 (1): an HTTP/1.1 or higher GET request.
    if req.method != "GET" {
        return Err(Rejection::new(405, "WebSocket upgrade requires GET"));
    }
    if req.version < 1 {
        return Err(Rejection::new(400, "WebSocket upgrade requires HTTP/1.1"));
    }
    // §4.2.1 (2): a Host header field.
    if req.header("host").is_none_or(|h| h.trim().is_empty()) {
        return Err(Rejection::new(400, "missing Host header"));
    }
    // §4.2.1 (3): Upgrade containing "websocket" (case-insensitive).
    if !req.has_token("upgrade", "websocket") {
        return Err(Rejection::new(400, "Upgrade header must be websocket"));
    }
    // §4.2.1 (4): Connection containing the "Upgrade" token.
    if !req.has_token("connection", "upgrade") {
        return Err(Rejection::new(
            400,
            "Connection header must contain upgrade",
        ));
    }
    // §4.2.1 (6) / §4.4: only version 13; otherwise 426 listing it.
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Rejection::new(426, "unsupported Sec-WebSocket-Version"));
    }
    // §4.2.1 (5): a key that base64-decodes to 16 bytes.
    let key = req
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(Rejection::new(400, "missing Sec-WebSocket-Key"))?;
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(key),
        _ => Err(Rejection::new(
            400,
            "Sec-WebSocket-Key is not 16 bytes of base64",
        )),
    }
}

/// RFC 6455 §4.2.2 (5.4): base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The `101 Switching Protocols` response (§4.2.2 (5)).
pub fn accept_response(
    key: &str,
    protocol: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    accept_response_ext(key, protocol, None, extra_headers)
}

/// [`accept_response`] with the extensions the server accepted
/// (`Sec-WebSocket-Extensions`, RFC 6455 §4.2.2 (5.5)), e.g. the answer of
/// [`negotiate_deflate`].
///
/// ```
/// use wsmio::proto::handshake::accept_response_ext;
///
/// let r = accept_response_ext("dGhlIHNhbXBsZSBub25jZQ==", None, Some("permessage-deflate"), &[]);
/// let text = String::from_utf8(r).unwrap();
/// assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));
/// ```
pub fn accept_response_ext(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut r = Vec::with_capacity(160);
    r.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    r.extend_from_slice(accept_key(key).as_bytes());
    r.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        push_header(&mut r, "Sec-WebSocket-Protocol", p);
    }
    if let Some(e) = extensions {
        push_header(&mut r, "Sec-WebSocket-Extensions", e);
    }
    for (n, v) in extra_headers {
        push_header(&mut r, n, v);
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Append `name: value` to a head. The strings come from the embedding
/// application, not the peer; still, never let one break the head: a name
/// keeps only token characters (RFC 7230 §3.2.6) and a value loses CR and LF.
fn push_header(r: &mut Vec<u8>, name: &str, value: &str) {
    r.extend(name.bytes().filter(|&b| is_tchar(b)));
    r.extend_from_slice(b": ");
    r.extend(value.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    r.extend_from_slice(b"\r\n");
}

/// RFC 7230 §3.2.6 `tchar`: the characters of a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Server role, RFC 7692 §5: answer the permessage-deflate offers of `req`
/// (every `Sec-WebSocket-Extensions` field, in order) under `config`.
///
/// `Ok(Some(accepted))`: send `accepted.response.header_value()` as the
/// response's `Sec-WebSocket-Extensions` ([`accept_response_ext`]) and
/// build the connection with `accepted.params` (`Receiver::with_deflate`,
/// `Sender::with_deflate`). `Ok(None)`: no acceptable offer — answer
/// without the header; messages go uncompressed. `Err`: a header that is
/// not RFC 6455 §9.1's syntax, refused with `400` (§4.2.1 lets a server
/// refuse a malformed handshake; browsers never send one).
///
/// A build without the `deflate` feature cannot decompress: do not call
/// this there (or ignore its answer), so that the extension is declined.
///
/// ```
/// use wsmio::proto::extension::DeflateConfig;
/// use wsmio::proto::handshake::{negotiate_deflate, parse_request, HeadLimits};
///
/// let head = b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
/// let req = parse_request(head, &HeadLimits::default()).unwrap();
/// let accepted = negotiate_deflate(&req, &DeflateConfig::default()).unwrap().unwrap();
/// assert_eq!(
///     accepted.response.header_value(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// assert!(accepted.params.server_no_context_takeover);
/// ```
pub fn negotiate_deflate(
    req: &HttpRequest,
    config: &DeflateConfig,
) -> Result<Option<Accepted>, Rejection> {
    let values = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| v.as_slice());
    negotiate_server(values, config)
        .map_err(|_| Rejection::new(400, "malformed Sec-WebSocket-Extensions"))
}

/// The standard reason phrase of `status`: RFC 9110 §15, with 425 (RFC
/// 8470), 428, 429, 431, 511 (RFC 6585) and 451 (RFC 7725) from the IANA
/// registry. Other codes get their class's name (RFC 9110 §15: "Client
/// Error", ...); a client must not rely on the phrase anyway (RFC 9112 §4).
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Successful",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

/// A complete HTTP/1.1 response that closes the connection, with the
/// status's standard reason phrase ([`status_text`]).
pub fn http_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    http_response_with_reason(
        status,
        status_text(status),
        content_type,
        body,
        extra_headers,
    )
}

/// [`http_response`] with the reason phrase `reason`. RFC 9112 §4:
/// `reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )`, so any other
/// character (CR and LF above all: no header can be smuggled through it)
/// goes out as a space. A status outside 100–999 (not three digits, RFC
/// 9110 §15) goes out as `500`.
pub fn http_response_with_reason(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let (status, reason) = if (100..=999).contains(&status) {
        (status, reason)
    } else {
        (500, status_text(500))
    };
    let mut r = Vec::with_capacity(128 + body.len());
    r.extend_from_slice(format!("HTTP/1.1 {status} ").as_bytes());
    r.extend(reason.bytes().map(|b| match b {
        b'\t' | b' '..=b'~' | 0x80.. => b,
        _ => b' ',
    }));
    r.extend_from_slice(b"\r\n");
    push_header(&mut r, "Content-Type", content_type);
    push_header(&mut r, "Content-Length", &body.len().to_string());
    push_header(&mut r, "Connection", "close");
    for (n, v) in extra_headers {
        push_header(&mut r, n, v);
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// The response for a refused handshake: the status, the headers RFC 6455
/// asks for (§4.4: 426 lists the supported version), and the reason as body.
pub fn rejection_response(rej: &Rejection) -> Vec<u8> {
    let body = format!("{}\n", rej.reason);
    let extra: &[(&str, &str)] = match rej.status {
        426 => &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
        405 => &[("Allow", "GET")],
        _ => &[],
    };
    http_response(
        rej.status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        extra,
    )
}

/// What the server agreed to, from a client's point of view (RFC 6455
/// §4.1): [`ClientHandshake::validate`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The subprotocol the server selected (one we offered), if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters (RFC 7692 §7.1), if we offered it
    /// and the server accepted; build the connection with them
    /// (`Connection::with_deflate`).
    pub deflate: Option<DeflateParams>,
}

/// The client side of the handshake (RFC 6455 §4.1).
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    /// The permessage-deflate offer sent, if any.
    offer: Option<Offer>,
}

impl ClientHandshake {
    /// A handshake with `key_bytes` as the nonce (§4.1: 16 random bytes,
    /// chosen fresh for each connection) offering `protocols`.
    pub fn new(key_bytes: [u8; 16], protocols: &[&str]) -> Self {
        ClientHandshake {
            key: BASE64.encode(key_bytes),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            offer: None,
        }
    }

    /// [`ClientHandshake::new`], also offering permessage-deflate as
    /// `config` says ([`Offer::from_config`], RFC 7692 §7.1). Read the
    /// answer with [`ClientHandshake::validate`], which returns the agreed
    /// parameters.
    ///
    /// ```
    /// use wsmio::proto::extension::DeflateConfig;
    /// use wsmio::proto::handshake::{accept_response_ext, negotiate_deflate, parse_request};
    /// use wsmio::proto::handshake::{validate_upgrade, ClientHandshake, HeadLimits};
    ///
    /// let client = ClientHandshake::with_deflate([7; 16], &[], &DeflateConfig::default());
    /// let head = client.request("example.com", "/ws", &[]);
    /// // The server.
    /// let req = parse_request(&head, &HeadLimits::default()).unwrap();
    /// let key = validate_upgrade(&req).unwrap();
    /// let accepted = negotiate_deflate(&req, &DeflateConfig::default()).unwrap().unwrap();
    /// let answer = accepted.response.header_value();
    /// let response = accept_response_ext(key, None, Some(&answer), &[]);
    /// // The client again.
    /// let agreed = client.validate(&response, &HeadLimits::default()).unwrap();
    /// assert_eq!(agreed.deflate, Some(accepted.params));
    /// ```
    pub fn with_deflate(key_bytes: [u8; 16], protocols: &[&str], config: &DeflateConfig) -> Self {
        ClientHandshake {
            offer: Some(Offer::from_config(config)),
            ..ClientHandshake::new(key_bytes, protocols)
        }
    }

    /// The permessage-deflate offer, if one is made.
    pub fn offer(&self) -> Option<&Offer> {
        self.offer.as_ref()
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request head for `host` (with port, if not the default) and
    /// `path`, plus any extra headers (e.g. `Origin`).
    pub fn request(&self, host: &str, path: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
        let mut r = Vec::with_capacity(256);
        r.extend_from_slice(b"GET ");
        // The request target has no spaces or controls (RFC 7230 §3.1.1,
        // §5.3): percent-encode any the caller left in, so a path cannot
        // break the request line.
        for b in path.bytes() {
            if b <= b' ' || b == 0x7f {
                r.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                r.push(b);
            }
        }
        r.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(&mut r, "Host", host);
        push_header(&mut r, "Upgrade", "websocket");
        push_header(&mut r, "Connection", "Upgrade");
        push_header(&mut r, "Sec-WebSocket-Key", &self.key);
        push_header(&mut r, "Sec-WebSocket-Version", "13");
        if !self.protocols.is_empty() {
            push_header(&mut r, "Sec-WebSocket-Protocol", &self.protocols.join(", "));
        }
        if let Some(offer) = &self.offer {
            push_header(&mut r, "Sec-WebSocket-Extensions", &offer.header_value());
        }
        for (n, v) in extra_headers {
            push_header(&mut r, n, v);
        }
        r.extend_from_slice(b"\r\n");
        r
    }

    /// Check the server's response head (§4.1, "the client MUST validate the
    /// server's response"). Returns the selected subprotocol, if any.
    ///
    /// With a permessage-deflate offer, use [`ClientHandshake::validate`]:
    /// this drops the agreed parameters, without which compressed messages
    /// from the server fail the connection.
    pub fn validate_response(
        &self,
        head: &[u8],
        limits: &HeadLimits,
    ) -> Result<Option<String>, Rejection> {
        self.validate(head, limits).map(|a| a.protocol)
    }

    /// Check the server's response head (§4.1) and return what it agreed
    /// to: the subprotocol and the permessage-deflate parameters. An
    /// extension we did not offer, or an answer to our offer that RFC 7692
    /// §5 and §7.1 do not allow (an unknown, repeated or invalid parameter,
    /// a window or a context takeover we did not agree to), fails the
    /// handshake.
    pub fn validate(&self, head: &[u8], limits: &HeadLimits) -> Result<Agreement, Rejection> {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(Rejection::new(400, "malformed response head")),
        }
        // §4.1 (1): anything but 101 ends the handshake.
        if resp.code != Some(101) {
            return Err(Rejection::new(
                resp.code.unwrap_or(400),
                "server did not switch protocols",
            ));
        }
        // §4.1: the checks below read these headers as text; one that is
        // not (a byte past ASCII that is not UTF-8) must fail the
        // connection, not be skipped (a subprotocol or extension we did
        // not offer could hide in it).
        let checked = |n: &str| {
            n.eq_ignore_ascii_case("upgrade")
                || n.eq_ignore_ascii_case("connection")
                || n.get(..14)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sec-websocket-"))
        };
        if resp
            .headers
            .iter()
            .any(|h| checked(h.name) && std::str::from_utf8(h.value).is_err())
        {
            return Err(Rejection::new(400, "response header value is not text"));
        }
        let get = |name: &str| -> Vec<&str> {
            resp.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect()
        };
        // §4.1 (2), (3): Upgrade: websocket and Connection: Upgrade.
        if !get("upgrade")
            .iter()
            .any(|t| t.eq_ignore_ascii_case("websocket"))
        {
            return Err(Rejection::new(400, "response Upgrade is not websocket"));
        }
        if !get("connection")
            .iter()
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
        {
            return Err(Rejection::new(400, "response Connection lacks upgrade"));
        }
        // §4.1 (4): the accept value must match our key.
        let accept = get("sec-websocket-accept");
        if accept.len() != 1 || accept[0] != accept_key(&self.key) {
            return Err(Rejection::new(400, "wrong Sec-WebSocket-Accept"));
        }
        // §4.1 (5): no extension we did not offer; RFC 7692 §5: an answer
        // to our offer we can accept.
        let extensions = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| h.value);
        let deflate = match &self.offer {
            Some(offer) => {
                negotiate_client(offer, extensions).map_err(|e| Rejection::new(400, e.reason()))?
            }
            None if get("sec-websocket-extensions").is_empty() => None,
            None => {
                return Err(Rejection::new(
                    400,
                    "server selected an extension not offered",
                ))
            }
        };
        // §4.1 (6): a subprotocol only if it is one we offered.
        let proto = get("sec-websocket-protocol");
        let protocol = match proto.as_slice() {
            [] => None,
            [p] if self.protocols.iter().any(|o| o == p) => Some(p.to_string()),
            _ => {
                return Err(Rejection::new(
                    400,
                    "server selected a subprotocol not offered",
                ))
            }
        };
        Ok(Agreement { protocol, deflate })
    }
}

#[cfg(test)]
mod tests;
