//! The connection's byte stream: plain TCP, or TLS through rustls (wss://
//! and https:// on the same loop).
//!
//! Both present `Read`/`Write` to the loop. For TLS, `read` pulls records
//! from the socket into rustls and returns plaintext; `write` hands
//! plaintext to rustls and pushes the resulting records to the socket. TLS
//! records rustls could not write yet (the socket was full) stay in rustls
//! and go out on the next flush (`Stream::flush_pending`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Load a PEM certificate chain and private key into a rustls server
/// configuration (TLS 1.2 and 1.3, ring provider, ALPN `http/1.1`).
pub fn server_config_from_pem(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&cert.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(bad(&cert.display().to_string(), &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&key.display().to_string(), &e))?;
    server_config(certs, key)
}

/// A rustls server configuration from DER certificates and key.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A connection's transport.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

#[derive(Debug)]
pub(crate) struct TlsStream {
    sock: TcpStream,
    tls: ServerConnection,
    /// An error met after some plaintext was already read: handed over
    /// with the next `read`, after that plaintext.
    read_err: Option<io::Error>,
}

impl Stream {
    pub fn new(sock: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Stream> {
        Ok(match tls {
            None => Stream::Plain(sock),
            Some(cfg) => Stream::Tls(Box::new(TlsStream {
                sock,
                tls: ServerConnection::new(cfg.clone()).map_err(io::Error::other)?,
                read_err: None,
            })),
        })
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// True for TLS: a short read does not mean nothing more will come
    /// without a new readiness edge (an error or end of stream met after
    /// the plaintext is handed over on the next read), so read again.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(t) => t.sock.peer_addr(),
        }
    }

    /// Push rustls' pending records to the socket. `Ok(true)` when none are
    /// left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(t) => t.write_records(),
        }
    }

    /// Shut down our sending side (TLS: after a close_notify alert).
    /// `false` if the alert is still waiting for room in the socket: call
    /// again when it is writable (shutting down now would cut it off).
    pub fn shutdown_write(&mut self) -> bool {
        if let Stream::Tls(t) = self {
            // Idempotent: the alert is queued once.
            t.tls.send_close_notify();
            if matches!(t.write_records(), Ok(false)) {
                return false;
            }
        }
        let _ = self.socket().shutdown(Shutdown::Write);
        true
    }
}

impl TlsStream {
    fn write_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// `filled` bytes of plaintext now, `e` with the next read (or now if
    /// there is nothing to hand over first).
    fn hand_over(&mut self, filled: usize, e: io::Error) -> io::Result<usize> {
        if filled == 0 {
            return Err(e);
        }
        if e.kind() != io::ErrorKind::WouldBlock {
            self.read_err = Some(e);
        }
        Ok(filled)
    }
}

impl Read for Stream {
    /// TLS: fills `buf` with as many records' plaintext as the socket has,
    /// like a plain socket read (so the loop's per-turn read budget means
    /// the same bytes on both), not one record's worth (at most 16 KiB,
    /// RFC 8446 §5.1) per call.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.read(buf),
            Stream::Tls(t) => t,
        };
        if let Some(e) = t.read_err.take() {
            return Err(e);
        }
        let mut filled = 0;
        loop {
            // Plaintext already decrypted?
            match t.tls.reader().read(&mut buf[filled..]) {
                // A clean close_notify: end of stream after what we have.
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify (seen by an earlier
                // call): end of stream, as that earlier call reported.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return t.hand_over(filled, e),
            }
            // Pull records from the socket (WouldBlock goes to the caller).
            match t.tls.read_tls(&mut t.sock) {
                Ok(0) => return Ok(filled),
                Ok(_) => {
                    let state = t.tls.process_new_packets();
                    // Handshake replies and alerts go out now.
                    let _ = t.write_records();
                    if let Err(e) = state {
                        // Records decrypted before the bad one are still
                        // readable (e.g. a close frame, then a fatal
                        // alert): hand them over first.
                        while filled < buf.len() {
                            match t.tls.reader().read(&mut buf[filled..]) {
                                Ok(n) if n > 0 => filled += n,
                                _ => break,
                            }
                        }
                        let e = io::Error::new(io::ErrorKind::InvalidData, e);
                        return t.hand_over(filled, e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return t.hand_over(filled, e),
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // One buffer: `send`, no iovec for the kernel to copy in.
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(_) => self.write_vectored(&[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.write_vectored(bufs),
            Stream::Tls(t) => t,
        };
        // Don't let rustls buffer without bound: first push out what it has.
        if !t.write_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = t.tls.writer().write_vectored(bufs)?;
        t.write_records()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}
