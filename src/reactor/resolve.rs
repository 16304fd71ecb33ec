//! Host names resolved off the loop: `getaddrinfo` blocks, so each name is
//! resolved on a helper thread of its own, which posts the addresses back
//! through a channel and wakes the loop; the loop takes them at its next
//! turn (`connect.rs` dials them).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use super::id::ConnId;

/// A connection's resolved addresses (or why there are none).
pub(crate) type Resolved = (ConnId, io::Result<Vec<SocketAddr>>);

/// The loop's end of the resolver threads.
pub(crate) struct Resolver {
    tx: Sender<Resolved>,
    rx: Receiver<Resolved>,
    waker: Option<Arc<mio::Waker>>,
    /// Threads whose answer has not been taken: the loop looks for
    /// answers only while some are out.
    pub waiting: usize,
}

impl Resolver {
    pub fn new() -> Resolver {
        let (tx, rx) = mpsc::channel();
        Resolver {
            tx,
            rx,
            waker: None,
            waiting: 0,
        }
    }

    /// The loop's waker, raised with every answer.
    pub fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.waker = Some(waker);
    }

    /// Resolve `authority` (`host:port`) for connection `id` on a thread.
    pub fn spawn(&mut self, id: ConnId, authority: String) -> io::Result<()> {
        let tx = self.tx.clone();
        let waker = self.waker.clone();
        std::thread::Builder::new()
            .name("wsmio-resolve".into())
            .spawn(move || {
                let addrs = authority.to_socket_addrs().map(Iterator::collect);
                // A stopped loop drops the answer.
                if tx.send((id, addrs)).is_ok() {
                    if let Some(w) = waker {
                        let _ = w.wake();
                    }
                }
            })?;
        self.waiting += 1;
        Ok(())
    }

    /// An answer that came, if any.
    pub fn take(&mut self) -> Option<Resolved> {
        let r = self.rx.try_recv().ok()?;
        self.waiting -= 1;
        Some(r)
    }
}
