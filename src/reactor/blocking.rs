//! A blocking WebSocket client on one socket: connect to a `ws://` or
//! `wss://` URL, send, receive with a timeout, close. For scripts, tools
//! and simple programs (the hub's blocking client and the `wsmio sub`,
//! `pub` and `client` commands run on it); a server or a program with many
//! connections wants the reactor instead.
//!
//! The protocol is `proto::Connection` in the client role — the same core
//! the reactor runs: it masks every frame (RFC 6455 §5.3), answers pings
//! and closes, and checks everything the server sends.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::proto::handshake::{find_head_end, HeadLimits};
use crate::proto::{CloseCode, CloseState, Connection, Error, Event, Message, Role};

use super::client_options::{
    client_handshake, new_key, status_of, upgrade_request, Refusal, MAX_RESPONSE_HEAD,
};
pub use super::client_options::{ClientOptions, ConnectError};
use super::url::WsUrl;

/// Why a send failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The connection has ended (see [`Incoming::Closed`]).
    Closed,
    /// The core refused it (e.g. a data message after our close frame).
    Protocol(Error),
    /// Writing to the socket failed (the connection is then ended).
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the connection has ended"),
            SendError::Protocol(e) => write!(f, "{e}"),
            SendError::Io(e) => write!(f, "write failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        SendError::Protocol(e)
    }
}

/// What [`BlockingClient::recv`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A pong (an answer to [`BlockingClient::ping`]).
    Pong(Vec<u8>),
    /// The connection ended: the server's close code and reason (our reply
    /// was sent), or `None` when the connection was cut (1006, or a
    /// protocol error of the server: `reason` says which).
    Closed {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// Why.
        reason: String,
    },
}

/// The socket, plain or TLS.
enum Socket {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Socket {
    fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(s) => s,
            #[cfg(feature = "tls")]
            Socket::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => s.flush(),
        }
    }
}

/// A blocking WebSocket client connection.
///
/// ```no_run
/// use std::time::Duration;
/// use wsmio::reactor::{BlockingClient, ClientOptions, Incoming};
///
/// let mut ws = BlockingClient::connect("ws://127.0.0.1:9001/", &ClientOptions::default())?;
/// ws.send_text("hello")?;
/// if let Some(Incoming::Text(t)) = ws.recv(Some(Duration::from_secs(5))) {
///     println!("{t}");
/// }
/// ws.close(1000, "bye")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BlockingClient {
    socket: Socket,
    conn: Connection,
    protocol: Option<String>,
    buf: Vec<u8>,
    events: VecDeque<Incoming>,
    ended: bool,
}

impl fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClient")
            .field("peer", &self.socket.tcp().peer_addr().ok())
            .field("protocol", &self.protocol)
            .field("ended", &self.ended)
            .finish()
    }
}

impl BlockingClient {
    /// Connect to `url` and complete the opening handshake.
    pub fn connect(url: &str, options: &ClientOptions) -> Result<Self, ConnectError> {
        let url = WsUrl::parse(url).map_err(ConnectError::Url)?;
        let deadline = Instant::now() + options.connect_timeout;
        let tcp = open_tcp(&url, deadline)?;
        let _ = tcp.set_nodelay(true);
        let socket = wrap(tcp, &url, options)?;
        handshake(socket, &url, options)
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.tcp().peer_addr()
    }

    /// Send a text message (compressed if permessage-deflate was agreed).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.check_open()?;
        self.conn.send(Message::Text(text))?;
        self.write_out()
    }

    /// Send a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        self.conn.send(Message::Binary(data))?;
        self.write_out()
    }

    /// Send a ping (its pong comes as [`Incoming::Pong`]).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        self.conn.ping(payload)?;
        self.write_out()
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.ended {
            true => Err(SendError::Closed),
            false => Ok(()),
        }
    }

    /// Whether the connection has ended (after [`Incoming::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.ended
    }

    /// The next message or event, waiting at most `timeout` (`None`: as
    /// long as it takes); `None` if nothing came in time. The end of the
    /// connection, however it came, is one [`Incoming::Closed`]; after it
    /// always `None`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Option<Incoming> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return None,
                },
                None => None,
            };
            self.read_some(left);
        }
    }

    /// Close with `code` and `reason` (RFC 6455 §7.1.2) and wait (at most
    /// 5 s) for the server's close; then the connection ends. What arrives
    /// meanwhile is dropped.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        if !self.ended && self.conn.close_state() == CloseState::Open {
            self.conn.close(Some(CloseCode(code)), reason)?;
            self.write_out()?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.ended && Instant::now() < deadline {
            self.read_some(Some(deadline - Instant::now()));
        }
        self.events.clear();
        self.end();
        Ok(())
    }

    /// Write what the connection has queued (our frames, replies).
    fn write_out(&mut self) -> Result<(), SendError> {
        let out = self.conn.output();
        if out.is_empty() {
            return Ok(());
        }
        let n = out.len();
        let r = self
            .socket
            .write_all(out)
            .and_then(|()| self.socket.flush());
        self.conn.consume_output(n);
        r.map_err(|e| {
            self.cut("write failed");
            SendError::Io(e)
        })
    }

    /// Read once (waiting at most `wait`) and run the protocol over it.
    fn read_some(&mut self, wait: Option<Duration>) {
        let _ = self.socket.tcp().set_read_timeout(wait);
        self.buf.resize(64 * 1024, 0);
        match self.socket.read(&mut self.buf) {
            Ok(0) => self.cut("connection closed without a close frame"),
            Ok(n) => self.feed(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.cut(&format!("read failed: {e}")),
        }
    }

    /// Run the protocol over the first `n` bytes of the buffer.
    fn feed(&mut self, n: usize) {
        let mut input = std::mem::take(&mut self.buf);
        let events = &mut self.events;
        let r = self.conn.receive(&mut input[..n], |ev| match ev {
            Event::Message(Message::Text(t)) => events.push_back(Incoming::Text(t.to_string())),
            Event::Message(Message::Binary(b)) => events.push_back(Incoming::Binary(b.to_vec())),
            Event::Pong(p) => events.push_back(Incoming::Pong(p.to_vec())),
            Event::Close { code, reason } => events.push_back(Incoming::Closed {
                code: code.map(|c| c.0),
                reason: reason.to_string(),
            }),
            Event::Ping(_) | Event::Chunk(_) => {}
        });
        self.buf = input;
        // Pongs, our close reply, or the close frame of an error.
        let _ = self.write_out();
        match r {
            Ok(())
                if self
                    .events
                    .iter()
                    .any(|e| matches!(e, Incoming::Closed { .. })) =>
            {
                self.end();
            }
            Ok(()) => {}
            Err(e) => self.cut(&format!("the server broke the protocol: {e}")),
        }
    }

    /// The connection was cut (or failed): report it once.
    fn cut(&mut self, why: &str) {
        if !self.ended {
            self.events.push_back(Incoming::Closed {
                code: None,
                reason: why.to_string(),
            });
        }
        self.end();
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self.socket.tcp().shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Resolve the URL's host and connect to the first address that answers.
fn open_tcp(url: &WsUrl, deadline: Instant) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = url
        .authority()
        .to_socket_addrs()
        .map_err(ConnectError::Resolve)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            )));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(ConnectError::Connect(last))
}

/// TLS around the socket for `wss://`.
fn wrap(tcp: TcpStream, url: &WsUrl, options: &ClientOptions) -> Result<Socket, ConnectError> {
    if !url.secure {
        return Ok(Socket::Plain(tcp));
    }
    #[cfg(feature = "tls")]
    {
        let config = match &options.tls {
            Some(c) => c.clone(),
            None => super::tls_client::platform_roots()
                .and_then(super::tls_client::client_config)
                .map_err(|e| ConnectError::Tls(e.to_string()))?,
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        Ok(Socket::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tcp, options);
        Err(ConnectError::Tls("wss:// needs the `tls` feature".into()))
    }
}

/// Send the upgrade request and read the answer (RFC 6455 §4.1).
fn handshake(
    mut socket: Socket,
    url: &WsUrl,
    options: &ClientOptions,
) -> Result<BlockingClient, ConnectError> {
    let deadline = Instant::now() + options.handshake_timeout;
    let hs = client_handshake(new_key()?, options);
    let request = upgrade_request(&hs, url, options);
    // The TLS handshake runs inside the first write and reads too: a
    // server that accepts TCP and then stays silent must time out here.
    let _ = socket
        .tcp()
        .set_read_timeout(Some(options.handshake_timeout));
    let _ = socket
        .tcp()
        .set_write_timeout(Some(options.handshake_timeout));
    io_step(socket.write_all(&request).and_then(|()| socket.flush()))?;
    let (head, rest) = read_head(&mut socket, deadline)?;
    // §4.1: any status but 101 ends the handshake; the caller gets it.
    if status_of(&head).is_some_and(|s| s != 101) {
        return Err(refused(&mut socket, &head, rest, deadline, options));
    }
    let agreed = hs
        .validate(&head, &HeadLimits::default())
        .map_err(|rej| ConnectError::Handshake(rej.reason))?;
    let conn = connection(options, &agreed);
    let mut c = BlockingClient {
        socket,
        conn,
        protocol: agreed.protocol,
        buf: Vec::new(),
        events: VecDeque::new(),
        ended: false,
    };
    if !rest.is_empty() {
        // Frames that came with the response head.
        let n = rest.len();
        c.buf = rest;
        c.buf.resize(64 * 1024.max(n), 0);
        c.feed(n);
    }
    // Writes block as long as they need once open (reads set their own).
    let _ = c.socket.tcp().set_write_timeout(None);
    Ok(c)
}

fn connection(options: &ClientOptions, agreed: &crate::proto::handshake::Agreement) -> Connection {
    #[cfg(feature = "deflate")]
    if let Some(params) = agreed.deflate {
        return Connection::with_deflate(Role::Client, options.limits, params, options.compression);
    }
    let _ = agreed;
    Connection::new(Role::Client, options.limits)
}

/// An I/O error of the handshake, typed: a timeout, a TLS failure (rustls
/// reports its errors inside `io::Error`), or the rest.
fn io_step<T>(r: io::Result<T>) -> Result<T, ConnectError> {
    r.map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return ConnectError::Timeout;
        }
        #[cfg(feature = "tls")]
        if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return ConnectError::Tls(t.to_string());
        }
        ConnectError::Io(e)
    })
}

/// The response head, and any bytes read past it.
fn read_head(socket: &mut Socket, deadline: Instant) -> Result<(Vec<u8>, Vec<u8>), ConnectError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&buf, 0) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(ConnectError::Handshake("response head too large"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout);
        }
        let _ = socket.tcp().set_read_timeout(Some(left));
        match io_step(socket.read(&mut chunk))? {
            0 => {
                return Err(ConnectError::Handshake(
                    "connection closed during the handshake",
                ))
            }
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A refusal: status, headers and a bounded body.
fn refused(
    socket: &mut Socket,
    head: &[u8],
    body: Vec<u8>,
    deadline: Instant,
    options: &ClientOptions,
) -> ConnectError {
    let mut refusal = Refusal::new(head, body, options.max_refusal_body);
    let mut chunk = [0u8; 4096];
    while !refusal.done() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = socket.tcp().set_read_timeout(Some(left));
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                refusal.push(&chunk[..n]);
            }
        }
    }
    refusal.into_error()
}
