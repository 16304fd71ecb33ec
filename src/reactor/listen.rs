//! The listening socket and its accept queue: `listen(2)` with
//! [`Config::backlog`](super::Config::backlog) instead of the fixed 128
//! that `mio` and `std` ask for, so a reconnect storm waits in the kernel's
//! queue instead of having its SYNs dropped (each dropped client waits a
//! second or more for its retry).
//!
//! The socket is created and bound by `mio` (non-blocking, close-on-exec,
//! `SO_REUSEADDR`); then `listen(2)` is called again with the backlog we
//! want. On a socket that is already listening, `listen` only sets the
//! queue's length (Linux `inet_listen`, the BSDs' `solisten`), so the same
//! call serves a listener handed over by [`super::Server::from_std`].

use std::io;
#[cfg(unix)]
use std::os::fd::AsRawFd;

/// Where Linux publishes the ceiling it puts on every backlog.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// Set the accept queue of the listening socket `sock` to `backlog`
/// entries (the kernel caps it at `net.core.somaxconn`), and log a warning
/// when that ceiling is lower than asked.
#[cfg(unix)]
pub(crate) fn set_backlog(sock: &impl AsRawFd, backlog: u32) -> io::Result<()> {
    let asked = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: `listen` takes a descriptor and an integer, no pointers; the
    // descriptor is owned by `sock`, which outlives the call. Tested below
    // (the queue's length is read back) and by every server the tests bind.
    let r = unsafe { libc::listen(sock.as_raw_fd(), asked) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(max) = somaxconn() {
        if max < backlog {
            log::warn!(
                "listen backlog {backlog} capped at {max} by net.core.somaxconn; \
                 raise it (sysctl net.core.somaxconn={backlog}) for a deeper accept queue"
            );
        }
    }
    Ok(())
}

/// Elsewhere the listener keeps the backlog it was bound with.
#[cfg(not(unix))]
pub(crate) fn set_backlog<S>(_sock: &S, _backlog: u32) -> io::Result<()> {
    Ok(())
}

/// The kernel's ceiling on listen backlogs, where it is published.
#[cfg_attr(not(unix), allow(dead_code))]
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The accept queue's length of a listening socket: Linux reports it
    /// in `tcpi_sacked` (and the queue's current fill in `tcpi_unacked`).
    fn queue_len(sock: &impl AsRawFd) -> u32 {
        // SAFETY: all-zero is a valid `tcp_info` (integers only).
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` are valid for writes and `len` holds the
        // buffer's size; the descriptor is owned by `sock`.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        info.tcpi_sacked
    }

    #[test]
    fn the_backlog_is_set_on_a_listening_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cap = somaxconn().unwrap_or(u32::MAX);
        set_backlog(&l, 1000).unwrap();
        assert_eq!(queue_len(&l), 1000.min(cap));
        // Again, smaller: `listen` on a listening socket only resizes.
        set_backlog(&l, 200).unwrap();
        assert_eq!(queue_len(&l), 200.min(cap));
        // Asking more than the kernel allows gets its ceiling.
        set_backlog(&l, u32::MAX).unwrap();
        assert_eq!(queue_len(&l), cap.min(i32::MAX as u32));
        // Still a listener.
        let addr = l.local_addr().unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        assert!(l.accept().is_ok());
    }
}
