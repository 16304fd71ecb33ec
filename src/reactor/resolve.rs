//! Host names resolved off the loop: `getaddrinfo` blocks, so each name is
//! resolved on a helper thread of its own (at most [`MAX_RESOLVER_THREADS`]
//! at once, the rest queued), which posts the addresses back through a
//! channel and wakes the loop; the loop takes them at its next turn
//! (`connect.rs` dials them).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use super::id::ConnId;

/// Resolver threads running at once; names past it wait their turn.
pub(crate) const MAX_RESOLVER_THREADS: usize = 16;

/// A connection's resolved addresses (or why there are none).
pub(crate) type Resolved = (ConnId, io::Result<Vec<SocketAddr>>);

/// The loop's end of the resolver threads.
pub(crate) struct Resolver {
    tx: Sender<Resolved>,
    rx: Receiver<Resolved>,
    waker: Option<Arc<mio::Waker>>,
    /// Names waiting for a thread: at most one per connection still
    /// dialing (a name whose connection is gone by its turn is dropped,
    /// see [`Resolver::take`]), so the connection limit bounds it.
    queued: VecDeque<(ConnId, String)>,
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
            queued: VecDeque::new(),
            waiting: 0,
        }
    }

    /// The loop's waker, raised with every answer.
    pub fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.waker = Some(waker);
    }

    /// Resolve `authority` (`host:port`) for connection `id`: on a thread
    /// now, or once one of the running threads has answered.
    pub fn resolve(&mut self, id: ConnId, authority: String) -> io::Result<()> {
        if self.waiting >= MAX_RESOLVER_THREADS {
            self.queued.push_back((id, authority));
            return Ok(());
        }
        self.spawn(id, authority)
    }

    fn spawn(&mut self, id: ConnId, authority: String) -> io::Result<()> {
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

    /// An answer that came, if any. Its thread's place goes to the next
    /// queued name whose connection is still `alive` (one that timed out
    /// or was closed while queued is dropped, so it never holds a thread
    /// ahead of live ones); a name whose thread cannot start is answered
    /// so.
    pub fn take(&mut self, alive: impl Fn(ConnId) -> bool) -> Option<Resolved> {
        let r = self.rx.try_recv().ok()?;
        self.waiting -= 1;
        while let Some((id, authority)) = self.queued.pop_front() {
            if !alive(id) {
                continue;
            }
            if let Err(e) = self.spawn(id, authority) {
                let _ = self.tx.send((id, Err(e)));
                self.waiting += 1; // answered through the channel
            }
            break;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More names than threads: every one is answered, in turn.
    #[test]
    fn names_past_the_thread_limit_wait_their_turn() {
        let mut r = Resolver::new();
        let n = MAX_RESOLVER_THREADS + 5;
        for key in 0..n as u32 {
            r.resolve(ConnId { key, gen: 1 }, format!("127.0.0.1:{}", 1000 + key))
                .unwrap();
        }
        assert_eq!(r.waiting, MAX_RESOLVER_THREADS);
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < n {
            assert!(std::time::Instant::now() < deadline, "{} of {n}", got.len());
            match r.take(|_| true) {
                Some((id, addrs)) => got.push((id.key, addrs.unwrap()[0].port())),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        got.sort();
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, &(k, p))| k == i as u32 && p == 1000 + k as u16));
        assert_eq!(r.waiting, 0);
    }

    /// A queued name whose connection is gone by its turn gets no thread.
    #[test]
    fn names_of_connections_gone_meanwhile_are_dropped() {
        let mut r = Resolver::new();
        let n = MAX_RESOLVER_THREADS + 6;
        for key in 0..n as u32 {
            r.resolve(ConnId { key, gen: 1 }, format!("127.0.0.1:{}", 1000 + key))
                .unwrap();
        }
        // The queued names of odd keys belong to connections now gone.
        let alive =
            |id: ConnId| (id.key as usize) < MAX_RESOLVER_THREADS || id.key.is_multiple_of(2);
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while r.waiting > 0 {
            assert!(std::time::Instant::now() < deadline, "{got:?}");
            match r.take(alive) {
                Some((id, _)) => got.push(id.key),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        got.sort();
        let want: Vec<u32> = (0..n as u32)
            .filter(|&k| alive(ConnId { key: k, gen: 1 }))
            .collect();
        assert_eq!(got, want);
        assert!(r.queued.is_empty());
    }
}
