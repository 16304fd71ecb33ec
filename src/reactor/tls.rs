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
}

impl Stream {
    pub fn new(sock: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Stream> {
        Ok(match tls {
            None => Stream::Plain(sock),
            Some(cfg) => Stream::Tls(Box::new(TlsStream {
                sock,
                tls: ServerConnection::new(cfg.clone()).map_err(io::Error::other)?,
            })),
        })
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// True for TLS: a short read does not mean the socket is drained
    /// (rustls hands out plaintext record by record).
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
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.read(buf),
            Stream::Tls(t) => t,
        };
        loop {
            // Plaintext already decrypted?
            match t.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Pull records from the socket (WouldBlock goes to the caller).
            match t.tls.read_tls(&mut t.sock)? {
                0 => return Ok(0),
                _ => {
                    let state = t.tls.process_new_packets();
                    // Handshake replies and alerts go out now.
                    let _ = t.write_records();
                    state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
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
