//! TLS through rustls (the `tls` feature): the server configuration from
//! PEM files, and the TLS side of a connection's stream — accepted (server)
//! or dialed by the loop's client (`Ctx::connect`, SNI from the URL's host).
//!
//! `read` pulls records from the socket into rustls and returns plaintext;
//! `write` hands plaintext to rustls and pushes the resulting records to
//! the socket. TLS records rustls could not write yet (the socket was full)
//! stay in rustls and go out on the next flush (`Stream::flush_pending`).

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

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

/// A rustls server configuration from DER certificates and key, with the
/// `ring` crypto provider.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    server_config_with_provider(certs, key, provider)
}

/// A rustls server configuration from DER certificates and key, with the
/// crypto `provider` of your choice (for example aws-lc-rs, or a FIPS
/// build): TLS 1.2 and 1.3, ALPN `http/1.1`. For anything else, build a
/// [`ServerConfig`] yourself and pass it to `Config::with_tls`.
pub fn server_config_with_provider(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> io::Result<Arc<ServerConfig>> {
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
pub(crate) struct TlsStream {
    sock: TcpStream,
    tls: Connection,
    /// An error met after some plaintext was already read: handed over
    /// with the next `read`, after that plaintext.
    read_err: Option<io::Error>,
}

impl TlsStream {
    pub fn new(sock: TcpStream, cfg: &Arc<ServerConfig>) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock,
            tls: ServerConnection::new(cfg.clone())
                .map_err(io::Error::other)?
                .into(),
            read_err: None,
        })
    }

    /// The client side for a socket the loop dialed: `name` is sent as SNI
    /// and checked against the server's certificate.
    pub fn client(
        sock: TcpStream,
        cfg: &Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock,
            tls: ClientConnection::new(cfg.clone(), name)
                .map_err(io::Error::other)?
                .into(),
            read_err: None,
        })
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    pub fn socket_ref(&self) -> &TcpStream {
        &self.sock
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }

    /// Queue a close_notify alert (idempotent) and push it out. `false` if
    /// it is still waiting for room in the socket.
    pub fn close_notify(&mut self) -> bool {
        self.tls.send_close_notify();
        !matches!(self.write_records(), Ok(false))
    }

    /// Push rustls' pending records to the socket. `Ok(true)` when none are
    /// left.
    pub fn write_records(&mut self) -> io::Result<bool> {
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

    /// Fills `buf` with as many records' plaintext as the socket has, like
    /// a plain socket read (so the loop's per-turn read budget means the
    /// same bytes on both), not one record's worth (at most 16 KiB, RFC
    /// 8446 §5.1) per call.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.read_err.take() {
            return Err(e);
        }
        let mut filled = 0;
        loop {
            // Plaintext already decrypted?
            match self.tls.reader().read(&mut buf[filled..]) {
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
                Err(e) => return self.hand_over(filled, e),
            }
            // Pull records from the socket (WouldBlock goes to the caller).
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(filled),
                Ok(_) => {
                    let state = self.tls.process_new_packets();
                    // Handshake replies and alerts go out now.
                    let _ = self.write_records();
                    if let Err(e) = state {
                        // Records decrypted before the bad one are still
                        // readable (e.g. a close frame, then a fatal
                        // alert): hand them over first.
                        while filled < buf.len() {
                            match self.tls.reader().read(&mut buf[filled..]) {
                                Ok(n) if n > 0 => filled += n,
                                _ => break,
                            }
                        }
                        let e = io::Error::new(io::ErrorKind::InvalidData, e);
                        return self.hand_over(filled, e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.hand_over(filled, e),
            }
        }
    }

    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Don't let rustls buffer without bound: first push out what it has.
        if !self.write_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        self.write_records()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}
