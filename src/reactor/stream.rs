//! A connection's byte stream: plain TCP, or TLS through rustls (wss:// and
//! https:// on the same loop, with the `tls` feature).
//!
//! Both present `Read`/`Write` to the loop. TLS records rustls could not
//! write yet (the socket was full) stay in rustls and go out on the next
//! flush ([`Stream::flush_pending`]); see `tls.rs`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;

use super::config::Config;
#[cfg(feature = "tls")]
use super::tls::TlsStream;

/// A connection's transport.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The transport for a just-accepted socket: TLS if `config` serves it.
    pub fn accepted(sock: TcpStream, config: &Config) -> io::Result<Stream> {
        #[cfg(feature = "tls")]
        if let Some(cfg) = &config.tls {
            return Ok(Stream::Tls(Box::new(TlsStream::new(sock, cfg)?)));
        }
        let _ = config;
        Ok(Stream::Plain(sock))
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.socket(),
        }
    }

    /// True for TLS: a short read does not mean nothing more will come
    /// without a new readiness edge (an error or end of stream met after
    /// the plaintext is handed over on the next read), so read again.
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(_) => true,
        }
    }

    /// The socket's send buffer (`SO_SNDBUF`): about what one write to an
    /// idle connection hands to the kernel. 0 if it cannot be read.
    pub fn send_buffer_size(&self) -> usize {
        match self {
            Stream::Plain(s) => send_buffer_size(s),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => send_buffer_size(t.socket_ref()),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.peer_addr(),
        }
    }

    /// Push rustls' pending records to the socket. `Ok(true)` when none are
    /// left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write_records(),
        }
    }

    /// Shut down our sending side (TLS: after a close_notify alert).
    /// `false` if the alert is still waiting for room in the socket: call
    /// again when it is writable (shutting down now would cut it off).
    pub fn shutdown_write(&mut self) -> bool {
        #[cfg(feature = "tls")]
        if let Stream::Tls(t) = self {
            if !t.close_notify() {
                return false;
            }
        }
        let _ = self.socket().shutdown(Shutdown::Write);
        true
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // One buffer: `send`, no iovec for the kernel to copy in.
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write_vectored(&[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}

/// `SO_SNDBUF` of `sock` (0 if it cannot be read).
#[cfg(unix)]
fn send_buffer_size(sock: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` and `len` are valid for writes and `len` holds the
    // size of `size`; the descriptor is owned by `sock`, which outlives the
    // call. Tested below.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        usize::try_from(size).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(not(unix))]
fn send_buffer_size(_sock: &TcpStream) -> usize {
    0
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_send_buffer_size_is_what_the_kernel_reports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (sock, _) = l.accept().unwrap();
        let sock = TcpStream::from_std(sock);
        let size = send_buffer_size(&sock);
        assert!(size >= 4096, "{size}");
        // Set by hand, Linux doubles it for its bookkeeping (socket(7)).
        let asked: libc::c_int = 64 * 1024;
        use std::os::fd::AsRawFd;
        // SAFETY: a valid `c_int` and its size, for the socket `sock` owns.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&asked as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let size = send_buffer_size(&sock);
        assert!((64 * 1024..=2 * 64 * 1024).contains(&size), "{size}");
        assert!(Stream::Plain(sock).send_buffer_size() == size);
    }
}
