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
    /// No socket yet: a client connection whose host name is being
    /// resolved off the loop (`connect.rs`). Reads and writes fail with
    /// `NotConnected`; nothing is registered.
    Unconnected,
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

    /// The socket (`None` before a client connection has one).
    pub fn socket(&mut self) -> Option<&mut TcpStream> {
        match self {
            Stream::Unconnected => None,
            Stream::Plain(s) => Some(s),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => Some(t.socket()),
        }
    }

    /// True for TLS: a short read does not mean nothing more will come
    /// without a new readiness edge (an error or end of stream met after
    /// the plaintext is handed over on the next read), so read again.
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Unconnected | Stream::Plain(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(_) => true,
        }
    }

    /// Room in the socket's send buffer now: about what the next write
    /// hands to the kernel. Asked of the kernel, no I/O; 0 where it cannot
    /// say.
    pub fn send_room(&self) -> usize {
        match self {
            Stream::Unconnected => 0,
            Stream::Plain(s) => send_room(s),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => send_room(t.socket_ref()),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Unconnected => Err(not_connected()),
            Stream::Plain(s) => s.peer_addr(),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.peer_addr(),
        }
    }

    /// Push rustls' pending records to the socket. `Ok(true)` when none are
    /// left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Unconnected | Stream::Plain(_) => Ok(true),
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
        if let Some(s) = self.socket() {
            let _ = s.shutdown(Shutdown::Write);
        }
        true
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unconnected => Err(not_connected()),
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unconnected => Err(not_connected()),
            // One buffer: `send`, no iovec for the kernel to copy in.
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write_vectored(&[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unconnected => Err(not_connected()),
            Stream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}

fn not_connected() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

/// Room in `sock`'s send buffer: `SO_MEMINFO`'s send buffer size less
/// what is queued in it, the test `tcp_sendmsg` makes before it takes
/// more (`sk_stream_memory_free`). 0 if the kernel cannot say.
#[cfg(target_os = "linux")]
fn send_room(sock: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    // SK_MEMINFO_VARS of Linux 4.6 and later (the kernel copies at most
    // what it has and says how much in `len`).
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes and `len` holds the
    // size of `info`; the descriptor is owned by `sock`, which outlives the
    // call. Tested below.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let sndbuf = info[libc::SK_MEMINFO_SNDBUF as usize];
    let queued = info[libc::SK_MEMINFO_WMEM_QUEUED as usize];
    let have = len as usize / std::mem::size_of::<u32>();
    if r == 0 && have > libc::SK_MEMINFO_WMEM_QUEUED as usize {
        sndbuf.saturating_sub(queued) as usize
    } else {
        0
    }
}

#[cfg(not(target_os = "linux"))]
fn send_room(_sock: &TcpStream) -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Read;

    /// An idle socket has its whole send buffer free; a full one none, and
    /// some again once its peer reads.
    #[test]
    fn send_room_follows_the_kernels_send_buffer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (sock, _) = l.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut sock = TcpStream::from_std(sock);
        let idle = send_room(&sock);
        assert!(idle >= 4096, "{idle}");
        let chunk = vec![7u8; 64 * 1024];
        let mut taken = 0;
        loop {
            match sock.write(&chunk) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // What the idle socket said it had room for is about what it took.
        assert!(taken >= idle / 2, "took {taken}, room was {idle}");
        assert_eq!(send_room(&sock), 0);
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < buf.len() {
            read += peer.read(&mut buf[read..]).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while send_room(&sock) == 0 {
            assert!(std::time::Instant::now() < deadline, "no room after a read");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
