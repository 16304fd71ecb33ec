//! Connection lifecycle over real sockets: heartbeats, the close handshake
//! from either side, graceful shutdown, backpressure and queue bounds, and
//! generation-tagged connection ids.

mod common;

use std::io::{self, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use wsmio::{
    CloseCode, CloseInfo, ConnId, Ctx, Frame, FullQueuePolicy, Handler, Message, SendStatus,
};

/// The handler is told that `id` ended with `code`, closed by us, without
/// a close frame back from the peer.
fn closed_by_us_uncleanly(events: &mpsc::Receiver<SrvEv>, id: ConnId, code: CloseCode) {
    let (gone, info) = wait_close(events);
    assert_eq!(gone, id);
    assert_eq!(info.code, code);
    assert!(!info.by_peer && !info.clean, "{info:?}");
}

#[test]
fn heartbeat_closes_a_silent_peer_with_1001() {
    let (echo, events) = Echo::new();
    let cfg = config()
        .with_idle_timeout(Some(Duration::from_millis(200)))
        .with_pong_timeout(Duration::from_millis(300));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let t0 = Instant::now();
    let id = wait_open(&events);

    // The server asks for a sign of life after the idle period...
    assert_eq!(
        c.next_within(Duration::from_secs(2)),
        Some(Ev::Ping(vec![]))
    );
    let pinged = t0.elapsed();
    assert!(pinged >= Duration::from_millis(150), "{pinged:?}");
    // ...gets none, closes with 1001 and ends the TCP connection without
    // waiting for a close reply from a peer that does not answer.
    assert_eq!(c.expect_close(), Some(1001));
    let closed = t0.elapsed();
    assert!(closed >= pinged + Duration::from_millis(200), "{closed:?}");
    c.expect_eof();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    drop(c);
    closed_by_us_uncleanly(&events, id, CloseCode::GOING_AWAY);
    stop(&handle, join);
}

/// The heartbeat on a driven clock, to the millisecond: the ping at the end
/// of the idle period, the close 1001 at the pong deadline, and TCP ended
/// without waiting for a reply from a silent peer.
#[test]
fn heartbeat_deadlines_on_a_driven_clock() {
    let (echo, events) = Echo::new();
    let (cfg, clock) = clocked_config();
    let cfg = cfg
        .with_idle_timeout(Some(Duration::from_millis(200)))
        .with_pong_timeout(Duration::from_millis(300));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    step(&clock, 199);
    assert_eq!(c.next_within(QUIET), None, "ping before the idle period");
    step(&clock, 1);
    assert_eq!(c.next(), Ev::Ping(vec![]));
    step(&clock, 299);
    assert_eq!(
        c.next_within(QUIET),
        None,
        "closed before the pong deadline"
    );
    step(&clock, 1);
    c.expect_close_then_eof(1001);
    drop(c);
    closed_by_us_uncleanly(&events, id, CloseCode::GOING_AWAY);
    stop(&handle, join);
}

/// A peer that answers every heartbeat stays open: after each pong the next
/// ping comes one idle period later (the pong deadline is far off and plays
/// no part).
#[test]
fn a_peer_that_answers_pings_stays_open() {
    let (echo, events) = Echo::new();
    let (cfg, clock) = clocked_config();
    let cfg = cfg
        .with_idle_timeout(Some(Duration::from_millis(200)))
        .with_pong_timeout(Duration::from_secs(5));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    for round in 0..5 {
        step(&clock, 199);
        assert_eq!(c.next_within(QUIET), None, "round {round}: early ping");
        step(&clock, 1);
        assert_eq!(c.next(), Ev::Ping(vec![]), "round {round}");
        step(&clock, 100);
        c.pong(b"");
        // The server has read the pong before the clock moves on.
        wait_for(&events, TIMEOUT, |e| match e {
            SrvEv::Pong(i, _) if *i == id => Some(()),
            _ => None,
        });
    }
    c.send_text("still open");
    assert_eq!(c.expect_text(), "still open");
    drop(c);
    stop(&handle, join);
}

/// Busy polling still serves messages and never spins past a timer: with a
/// busy-poll setting far longer than the idle timeout (clamped to
/// `MAX_BUSY_POLL` and cut at the next deadline) the heartbeat ping comes on
/// time, and a graceful shutdown through the `Handle` ends the loop.
#[test]
fn busy_polling_serves_and_keeps_timers() {
    for spin in [Duration::from_micros(200), Duration::from_secs(3600)] {
        let (echo, events) = Echo::new();
        let cfg = config()
            .with_busy_poll(Some(spin))
            .with_idle_timeout(Some(Duration::from_millis(300)))
            .with_pong_timeout(Duration::from_millis(300));
        let (addr, handle, join) = start(echo, cfg);
        let mut c = Client::connect(addr);
        wait_open(&events);
        for i in 0..100 {
            let t = format!("message {i}");
            c.send_text(&t);
            assert_eq!(c.expect_text(), t);
        }
        let quiet = Instant::now();
        assert_eq!(
            c.next_within(Duration::from_secs(2)),
            Some(Ev::Ping(vec![])),
            "busy poll {spin:?}"
        );
        let waited = quiet.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
            "heartbeat after {waited:?} with busy poll {spin:?}"
        );
        c.pong(b"");
        let t0 = Instant::now();
        stop(&handle, join);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(c.expect_close(), Some(1001));
    }
}

#[test]
fn close_handshake_started_by_the_server() {
    let (echo, events) = Echo::new();
    // `config()`'s close timeout: 1 s.
    let (cfg, clock) = clocked_config();
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    handle.close(id, CloseCode(4000), "bye now").unwrap();
    assert_eq!(c.next(), Ev::Close(Some(4000), "bye now".into()));
    // The server waits for our reply (until the close timeout) before
    // closing TCP.
    step(&clock, 999);
    assert_eq!(c.next_within(QUIET), None);
    c.close(4000, "");
    c.expect_eof();
    drop(c);
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert_eq!(
        (info.code, info.clean, info.by_peer),
        (CloseCode(4000), true, false)
    );

    // Data sent by the peer while our close is in flight is still delivered.
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    handle.close(id, CloseCode::NORMAL, "").unwrap();
    assert_eq!(c.expect_close(), Some(1000));
    c.send_text("late");
    wait_for(&events, TIMEOUT, |e| match e {
        SrvEv::Message(i, m) if *i == id && m == b"late" => Some(()),
        _ => None,
    });
    c.close(1000, "");
    c.expect_eof();
    drop(c);
    assert_eq!(wait_close(&events).1.code, CloseCode::NORMAL);

    // A peer that just drops TCP: 1006, not clean.
    let c = Client::connect(addr);
    wait_open(&events);
    drop(c);
    let (_, info) = wait_close(&events);
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert!(!info.clean, "{info:?}");
    stop(&handle, join);
}

/// RFC 6455 §7.1.1: once both close frames have crossed, the server closes
/// TCP first — at once, not after the peer's FIN. The close timeout here is
/// far longer than `wait_close` waits, and each client keeps its socket open
/// until the server has reported the close.
#[test]
fn the_server_closes_tcp_as_soon_as_both_close_frames_crossed() {
    let (echo, events) = Echo::new();
    let cfg = config().with_close_timeout(Duration::from_secs(60));
    let (addr, handle, join) = start(echo, cfg);

    // The peer closes: our close frame, then our FIN.
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    c.close(1000, "done");
    c.expect_close_then_eof(1000);
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert_eq!(
        (info.code, info.clean, info.by_peer),
        (CloseCode::NORMAL, true, true)
    );
    drop(c);

    // The server closes: the same once the peer's reply arrives.
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    handle.close(id, CloseCode(4001), "").unwrap();
    assert_eq!(c.expect_close(), Some(4001));
    c.close(4001, "");
    c.expect_eof();
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert!(info.clean && !info.by_peer, "{info:?}");
    drop(c);

    // Bytes after the peer's close frame in the same write are discarded
    // (§5.5.1), and the connection still ends with FIN, not a reset.
    let mut c = Client::connect(addr);
    wait_open(&events);
    let mut bytes = close_frame(1000, b"");
    bytes.extend(masked(0x81, b"too late"));
    c.send_raw(&bytes);
    c.expect_close_then_eof(1000);
    assert!(wait_close(&events).1.clean);
    drop(c);

    stop(&handle, join);
}

/// Sends a large message on open; echoes.
struct Greeter {
    big: Vec<u8>,
    events: mpsc::Sender<SrvEv>,
}

impl Handler for Greeter {
    type Conn = ();

    fn open(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = ctx.send_binary(id, &self.big);
        let _ = self.events.send(SrvEv::Open(id));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = ctx.send(id, msg);
    }
}

#[test]
fn shutdown_delivers_queued_messages_then_1001() {
    let (tx, events) = mpsc::channel();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let greeter = Greeter {
        big: big.clone(),
        events: tx,
    };
    let cfg = config().with_shutdown_timeout(Duration::from_secs(5));
    let (addr, handle, join) = start(greeter, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    // Queue one more message from another thread, then shut down at once.
    handle.send(id, Frame::text("last words")).unwrap();
    handle.shutdown().unwrap();
    let t0 = Instant::now();

    assert_eq!(c.expect_binary(), big);
    assert_eq!(c.expect_text(), "last words");
    assert_eq!(
        c.next(),
        Ev::Close(Some(1001), "server shutting down".into())
    );
    c.close(1001, "");
    c.expect_eof();
    // `run` returns as soon as the last connection is gone, well before the
    // shutdown timeout.
    join_within(join, Duration::from_secs(3));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // No longer listening.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// Shut a server with `cfg` down while its one client never answers the
/// 1001: how long until the server ended the connection, and `run`
/// returned (bounded), and the close was reported as unclean 1001.
fn shutdown_with_a_silent_peer(cfg: wsmio::Config) -> Duration {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    wait_open(&events);
    let t0 = Instant::now();
    handle.shutdown().unwrap();
    assert_eq!(c.expect_close(), Some(1001));
    // We never reply; the server still ends the connection and `run`
    // returns.
    c.expect_eof();
    let took = t0.elapsed();
    join_within(join, Duration::from_secs(5));
    let (_, info) = wait_close(&events);
    assert_eq!(info.code, CloseCode::GOING_AWAY);
    assert!(!info.clean, "{info:?}");
    took
}

#[test]
fn shutdown_gives_up_on_a_peer_that_never_answers() {
    let took =
        shutdown_with_a_silent_peer(config().with_shutdown_timeout(Duration::from_millis(300)));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn shutdown_drops_connections_still_in_their_handshake() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config().with_shutdown_timeout(Duration::from_secs(5)));
    let mut open = Client::connect(addr);
    wait_open(&events);
    let mut half = tcp(addr);
    let (req, _) = request(addr);
    half.write_all(&req[..10]).unwrap();
    // Make sure the loop has accepted it before shutting down.
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    loop {
        let tx = tx.clone();
        handle
            .call(move |ctx| {
                let _ = tx.send(ctx.connections());
            })
            .unwrap();
        if rx.recv_timeout(TIMEOUT).unwrap() == 2 {
            break;
        }
        assert!(t0.elapsed() < TIMEOUT, "second connection never accepted");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.shutdown().unwrap();
    // No HTTP response for a request that never completed: just closed.
    let (rest, _reset) = read_until_closed(&mut half, Duration::from_secs(2));
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_eq!(open.expect_close(), Some(1001));
    open.close(1001, "");
    open.expect_eof();
    join_within(join, Duration::from_secs(3));
}

#[test]
fn broadcast_and_application_pings() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    let ids: Vec<ConnId> = (0..3).map(|_| wait_open(&events)).collect();
    handle.broadcast(Frame::text("to everyone")).unwrap();
    for c in &mut clients {
        assert_eq!(c.expect_text(), "to everyone");
    }
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let n = ctx.broadcast(&Frame::binary(&[1, 2, 3]));
            let _ = tx.send((n, ctx.open_connections()));
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), (3, 3));
    for c in &mut clients {
        assert_eq!(c.expect_binary(), [1, 2, 3]);
    }

    // A ping from the application; the pong reaches the handler.
    let target = ids[1];
    handle
        .call(move |ctx| {
            ctx.ping(target, b"app ping").unwrap();
        })
        .unwrap();
    let got = (0..clients.len())
        .find(|&i| {
            matches!(
                clients[i].next_within(Duration::from_millis(300)),
                Some(Ev::Ping(p)) if p == b"app ping"
            )
        })
        .expect("nobody got the ping");
    let c = &mut clients[got];
    c.pong(b"app ping");
    let from = wait_for(&events, TIMEOUT, |e| match e {
        SrvEv::Pong(id, p) if p == b"app ping" => Some(*id),
        _ => None,
    });
    assert_eq!(from, target);
    drop(clients);
    stop(&handle, join);
}

/// On "flood", sends numbered 64 KiB messages to a peer that does not
/// read until one is refused, and reports every status; on drain, reports
/// it and sends "drained". Sends only queue and the loop writes at the end
/// of each turn, so the flood goes on over turns: one message per turn
/// while the kernel takes the last one whole (`Sent`), then — the socket
/// is full — messages until one is refused. (Pushing to the limit from
/// the first turn would leave a queue that the turn's flush hands to the
/// still empty socket, and the drain would come before the peer read
/// anything.)
struct Flood {
    statuses: mpsc::Sender<Vec<SendStatus>>,
    events: mpsc::Sender<SrvEv>,
    flooding: Option<(ConnId, Vec<SendStatus>)>,
}

const CHUNK: usize = 64 * 1024;

impl Flood {
    fn flood_on(&mut self, ctx: &mut Ctx<'_>) {
        let Some((id, statuses)) = self.flooding.as_mut() else {
            return;
        };
        let mut payload = vec![0xABu8; CHUNK];
        loop {
            let i = statuses.len() as u32;
            payload[..4].copy_from_slice(&i.to_be_bytes());
            let s = ctx.send_binary(*id, &payload);
            statuses.push(s);
            match s {
                SendStatus::Sent if i < 20_000 => {
                    // Next turn, after this one's flush.
                    ctx.wake();
                    return;
                }
                SendStatus::Backpressured => {}
                _ => break,
            }
        }
        if let Some((_, statuses)) = self.flooding.take() {
            let _ = self.statuses.send(statuses);
        }
    }
}

impl Handler for Flood {
    type Conn = ();

    fn open(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(SrvEv::Open(id));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        if msg.as_bytes() != b"flood" {
            let _ = ctx.send(id, msg);
            return;
        }
        self.flooding = Some((id, Vec::new()));
        self.flood_on(ctx);
    }

    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        self.flood_on(ctx);
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(SrvEv::Drain(id));
        let _ = ctx.send_text(id, "drained");
    }

    fn close(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = self.events.send(SrvEv::Close(id, info));
    }
}

/// Start a `Flood` server with a soft limit just over one message (65 KiB)
/// and a 256 KiB hard limit, make it flood a client that does not read,
/// and return what it saw.
#[allow(clippy::type_complexity)]
fn flood(
    policy: FullQueuePolicy,
) -> (
    Client,
    ConnId,
    Vec<SendStatus>,
    mpsc::Receiver<SrvEv>,
    wsmio::Handle,
    std::thread::JoinHandle<Flood>,
) {
    let (stx, srx) = mpsc::channel();
    let (etx, events) = mpsc::channel();
    let cfg = config()
        .with_backpressure_limit(CHUNK + 1024)
        .with_max_queued_bytes(4 * CHUNK)
        .with_full_queue_policy(policy);
    let (addr, handle, join) = start(
        Flood {
            statuses: stx,
            events: etx,
            flooding: None,
        },
        cfg,
    );
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    c.send_text("flood");
    let statuses = srx.recv_timeout(TIMEOUT).expect("flood statuses");
    // Sent while the socket takes it all, Backpressured once bytes stay
    // queued, and finally refused.
    assert_eq!(statuses[0], SendStatus::Sent);
    assert_eq!(statuses.last(), Some(&SendStatus::Dropped), "{statuses:?}");
    let first_bp = statuses
        .iter()
        .position(|s| *s == SendStatus::Backpressured)
        .expect("no Backpressured before Dropped");
    let accepted = statuses.len() - 1;
    assert!(statuses[..first_bp].iter().all(|s| *s == SendStatus::Sent));
    assert!(statuses[first_bp..accepted]
        .iter()
        .all(|s| *s == SendStatus::Backpressured));
    // The queue holds at most the hard limit plus one message.
    assert!(
        accepted - first_bp <= 5,
        "{} messages queued past the soft limit",
        accepted - first_bp
    );
    (c, id, statuses, events, handle, join)
}

/// Read `n` numbered flood messages in order.
fn read_flood(c: &mut Client, n: usize) {
    for i in 0..n {
        let m = c.expect_binary();
        assert_eq!(m.len(), CHUNK);
        assert_eq!(u32::from_be_bytes([m[0], m[1], m[2], m[3]]), i as u32);
    }
}

#[test]
fn backpressure_drop_policy_then_drain() {
    let (mut c, id, statuses, events, handle, join) = flood(FullQueuePolicy::Drop);
    // Dropped, but still open.
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send((ctx.is_open(id), ctx.queued_bytes(id)));
        })
        .unwrap();
    let (open, queued) = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(open);
    assert!(queued.unwrap() <= 5 * (CHUNK + 14), "{queued:?}");
    // No drain while the client does not read.
    assert!(
        !matches!(
            events.recv_timeout(Duration::from_millis(200)),
            Ok(SrvEv::Drain(_))
        ),
        "drain before the client read anything"
    );

    // Read: every accepted message in order, then the drain's message.
    read_flood(&mut c, statuses.len() - 1);
    assert_eq!(c.expect_text(), "drained");
    wait_for(&events, TIMEOUT, |e| match e {
        SrvEv::Drain(i) if *i == id => Some(()),
        _ => None,
    });
    c.send_text("after");
    assert_eq!(c.expect_text(), "after");
    drop(c);
    stop(&handle, join);
}

#[test]
fn backpressure_close_policy_closes_with_1008() {
    let (mut c, id, statuses, events, handle, join) = flood(FullQueuePolicy::Close);
    // Everything accepted is still delivered, then the close frame.
    read_flood(&mut c, statuses.len() - 1);
    assert_eq!(c.next(), Ev::Close(Some(1008), "send queue full".into()));
    c.close(1008, "");
    c.expect_eof();
    drop(c);
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert_eq!(info.code, CloseCode::POLICY);
    assert!(!info.by_peer, "{info:?}");
    stop(&handle, join);
}

/// On "burst", queues 15,000-byte messages (all stay queued until the end
/// of the loop turn) until one is refused.
struct Burst {
    statuses: mpsc::Sender<Vec<SendStatus>>,
    events: mpsc::Sender<SrvEv>,
}

const BURST_MSG: usize = 15_000;
const BURST_MAX: usize = 100_000;

impl Handler for Burst {
    type Conn = ();

    fn open(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = self.events.send(SrvEv::Open(id));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        if msg.as_bytes() != b"burst" {
            let _ = ctx.send(id, msg);
            return;
        }
        let mut statuses = Vec::new();
        let payload = vec![b'b'; BURST_MSG];
        loop {
            let s = ctx.send_binary(id, &payload);
            statuses.push(s);
            if s != SendStatus::Sent && s != SendStatus::Backpressured {
                break;
            }
        }
        let _ = self.statuses.send(statuses);
    }

    fn close(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, info: CloseInfo) {
        let _ = self.events.send(SrvEv::Close(id, info));
    }
}

fn start_burst(
    policy: FullQueuePolicy,
) -> (
    std::net::SocketAddr,
    wsmio::Handle,
    std::thread::JoinHandle<Burst>,
    mpsc::Receiver<Vec<SendStatus>>,
    mpsc::Receiver<SrvEv>,
) {
    let (stx, srx) = mpsc::channel();
    let (etx, events) = mpsc::channel();
    let cfg = config()
        .with_max_queued_bytes(BURST_MAX)
        .with_control_reserve(4096)
        .with_full_queue_policy(policy);
    let (addr, handle, join) = start(
        Burst {
            statuses: stx,
            events: etx,
        },
        cfg,
    );
    (addr, handle, join, srx, events)
}

/// 15,000-byte messages are queued until the 100,000-byte queue refuses one
/// (a queue the last flush emptied takes, within a turn, the limit plus
/// the room in the socket's send buffer — what the turn's flush hands to
/// the kernel — so that is as many as the kernel's buffer holds, plus
/// seven). A message
/// below the limit is taken whole, so the queue ends up to 5,028 bytes
/// over the limit, more than the 4 KiB control reserve. The close frame of
/// the Close policy must still go out after them.
#[test]
fn close_policy_close_frame_fits_after_a_whole_message_overshoot() {
    let (addr, handle, join, statuses, events) = start_burst(FullQueuePolicy::Close);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    c.send_text("burst");
    let st = statuses.recv_timeout(TIMEOUT).unwrap();
    let sent = st.len() - 1;
    assert!(sent >= 7, "{st:?}");
    assert_eq!(st[sent], SendStatus::Dropped);
    for _ in 0..sent {
        assert_eq!(c.expect_binary().len(), BURST_MSG);
    }
    assert_eq!(c.next(), Ev::Close(Some(1008), "send queue full".into()));
    c.close(1008, "");
    c.expect_eof();
    drop(c);
    let (gone, info) = wait_close(&events);
    assert_eq!(gone, id);
    assert_eq!(info.code, CloseCode::POLICY);
    stop(&handle, join);
}

/// Same overshoot with the Drop policy, and a ping in the same write as the
/// request: the pong is owed to a peer that reads fine, so it is queued
/// (not treated as a peer that does not read at all).
#[test]
fn pong_fits_after_a_whole_message_overshoot() {
    let (addr, handle, join, statuses, events) = start_burst(FullQueuePolicy::Drop);
    let mut c = Client::connect(addr);
    wait_open(&events);
    let mut both = c.frame_bytes(wsmio::proto::OpCode::Text, true, b"burst");
    both.extend_from_slice(&masked(0x89, b"are you there"));
    c.send_raw(&both);
    let st = statuses.recv_timeout(TIMEOUT).unwrap();
    let sent = st.len() - 1;
    assert!(sent >= 7, "{st:?}");
    assert_eq!(st[sent], SendStatus::Dropped);
    for _ in 0..sent {
        assert_eq!(c.expect_binary().len(), BURST_MSG);
    }
    assert_eq!(c.next(), Ev::Pong(b"are you there".to_vec()));
    c.send_text("still open");
    assert_eq!(c.expect_text(), "still open");
    drop(c);
    stop(&handle, join);
}

#[test]
fn a_ping_flood_without_reading_is_cut_off_with_bounded_queue() {
    let (echo, events) = Echo::new();
    let max = 64 * 1024;
    let reserve = 4096;
    let cfg = config()
        .with_max_queued_bytes(max)
        .with_control_reserve(reserve)
        .with_idle_timeout(Some(Duration::from_millis(300)))
        .with_pong_timeout(Duration::from_millis(300))
        .with_close_timeout(Duration::from_millis(300));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    let mut bystander = Client::connect(addr);
    wait_open(&events);

    let mut pings = Vec::new();
    for _ in 0..512 {
        pings.extend_from_slice(&masked(0x89, &[0x55; 125]));
    }
    c.stream
        .set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (qtx, qrx) = mpsc::channel();
    let t0 = Instant::now();
    let mut off = 0;
    let mut peak = 0;
    let mut written = 0usize;
    let mut last_tick = Instant::now();
    let info = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "flooding peer not cut off; {written} bytes written, queue peak {peak}"
        );
        // The bystander stays active, so only the flooding peer can time out
        // (once its reading is paused, the heartbeat is what ends it).
        if last_tick.elapsed() > Duration::from_millis(100) {
            bystander.send_text("tick");
            assert_eq!(bystander.expect_text(), "tick");
            last_tick = Instant::now();
        }
        // Write whole frames only: keep the offset across partial writes.
        match c.stream.write(&pings[off..]) {
            Ok(n) => {
                written += n;
                off = (off + n) % pings.len();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {} // reset or broken pipe: the server cut us off
        }
        let tx = qtx.clone();
        handle
            .call(move |ctx| {
                let _ = tx.send(ctx.queued_bytes(id));
            })
            .unwrap();
        if let Some(q) = qrx.recv_timeout(TIMEOUT).unwrap() {
            peak = peak.max(q);
        }
        if let Ok(SrvEv::Close(gone, info)) = events.try_recv() {
            assert_eq!(gone, id);
            break info;
        }
    };
    // Control frames stay within the reserve above the data limit (a close
    // frame, at most 127 bytes, may come on top).
    assert!(peak <= max + reserve + 127, "queue peaked at {peak}");
    assert!(!info.clean, "{info:?}");
    assert!(written > max, "only {written} bytes written");

    // Other connections were served all along. (The flooding peer was cut
    // off either when its pongs overran the control reserve, or — if its
    // reading was paused first, the queue full but bounded — by the
    // heartbeat, since nothing more was read from it.)
    bystander.send_text("fine");
    assert_eq!(bystander.expect_text(), "fine");
    drop((c, bystander));
    stop(&handle, join);
}

#[test]
fn a_stale_id_never_reaches_the_connection_in_its_slot() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    let mut a = Client::connect(addr);
    let old = wait_open(&events);
    a.close(1000, "");
    a.expect_close_then_eof(1000);
    drop(a);
    assert_eq!(wait_close(&events).0, old);

    let mut b = Client::connect(addr);
    let new = wait_open(&events);
    assert_ne!(old, new);
    // The same slab slot, another generation.
    assert_eq!(old.as_u64() as u32, new.as_u64() as u32, "{old} vs {new}");

    handle.send(old, Frame::text("stale")).unwrap();
    handle.close(old, CloseCode::NORMAL, "stale").unwrap();
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send((
                ctx.send_text(old, "stale"),
                ctx.is_open(old),
                ctx.queued_bytes(old),
            ));
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(TIMEOUT).unwrap(),
        (SendStatus::Closed, false, None)
    );
    handle.send(new, Frame::text("fresh")).unwrap();
    assert_eq!(b.expect_text(), "fresh");
    assert_eq!(b.next_within(Duration::from_millis(200)), None);
    b.send_text("open");
    assert_eq!(b.expect_text(), "open");
    drop(b);
    stop(&handle, join);
}

/// Replies to each message with its first 5,000 bytes.
struct Shrink;

impl Handler for Shrink {
    type Conn = ();

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let b = msg.as_bytes();
        let _ = ctx.send(id, Message::Binary(&b[..b.len().min(5000)]));
    }
}

/// A read whose last reply leaves the queue over `max_queued_bytes`
/// pauses reading with input still unread in the socket. When the flush
/// right after that read writes everything (no `WouldBlock`, so no writable
/// event follows, and the client sends nothing more), reading must still
/// resume: every request is answered without waiting for a timer.
#[test]
fn reading_resumes_when_the_reads_own_flush_drains_the_queue() {
    let (addr, handle, join) = start(Shrink, config().with_max_queued_bytes(4096));
    let mut c = Client::connect(addr);
    // 40 requests of 16 KiB in one write: more than one 256 KiB read.
    let mut burst = Vec::new();
    for i in 0..40u8 {
        burst.extend(c.frame_bytes(wsmio::proto::OpCode::Binary, true, &[i; 16 * 1024]));
    }
    c.send_raw(&burst);
    for i in 0..40u8 {
        assert_eq!(c.expect_binary(), vec![i; 5000], "reply {i}");
    }
    stop(&handle, join);
}

/// Counts binary messages; answers a text message with that count. The
/// first binary message blocks the loop until the test opens the gate.
struct Counter {
    gate: Option<mpsc::Receiver<()>>,
    binary: usize,
}

impl Handler for Counter {
    type Conn = ();

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        match msg {
            Message::Text(_) => {
                let _ = ctx.send(id, Message::Text(&self.binary.to_string()));
            }
            Message::Binary(_) => {
                self.binary += 1;
                if let Some(gate) = self.gate.take() {
                    let _ = gate.recv_timeout(TIMEOUT);
                }
            }
        }
    }
}

/// A peer whose socket holds a lot of input gets `reads_per_turn` reads
/// per turn, not the loop until its socket is drained: another
/// connection's message waiting meanwhile is handled after a few of the
/// flooder's messages, not after all of them.
#[test]
fn a_flooding_peer_does_not_starve_the_others() {
    let (open_gate, gate) = mpsc::channel();
    let handler = Counter {
        gate: Some(gate),
        binary: 0,
    };
    let cfg = config().with_read_buffer_size(4096).with_reads_per_turn(2);
    let (addr, handle, join) = start(handler, cfg);
    let mut flooder = Client::connect(addr);
    let mut other = Client::connect(addr);
    // 4 KiB frames: about one per 4 KiB read.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.extend(flooder.frame_bytes(wsmio::proto::OpCode::Binary, true, &[7; 4096]));
    }
    // The first frame stops the loop in the handler; meanwhile 256 KiB
    // more wait in the flooder's socket and a text in the other's.
    flooder.send_raw(&flood[..4104]);
    std::thread::sleep(Duration::from_millis(100));
    flooder.send_raw(&flood[4104..]);
    other.send_text("count?");
    std::thread::sleep(Duration::from_millis(100));
    open_gate.send(()).unwrap();
    let seen: usize = other.expect_text().parse().unwrap();
    assert!(
        seen <= 8,
        "the other connection waited for {seen} of the flooder's 64 messages"
    );
    stop(&handle, join);
}

/// A peer that sends more than one turn's read budget and then closes its
/// side: the rest of its input is read on the next turn, and so is its FIN
/// (whose readiness edge was already reported), so the connection ends
/// now, not at the idle timeout.
#[test]
fn eof_after_a_budgeted_read_is_not_missed() {
    let (echo, events) = Echo::new();
    let cfg = config().with_read_buffer_size(4096).with_reads_per_turn(1);
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    wait_open(&events);
    let mut wire = Vec::new();
    for i in 0..3u8 {
        wire.extend(c.frame_bytes(wsmio::proto::OpCode::Binary, true, &[i; 5000]));
    }
    c.send_raw(&wire);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (_, info) = wait_close(&events);
    assert_eq!(info.code, CloseCode::ABNORMAL, "{info:?}");
    stop(&handle, join);
}

/// RFC 6455 §7.4.1: 1005, 1006 and 1015 must never be sent. An application
/// that asks to close with one still gets its connection closed, with 1011.
#[test]
fn closing_with_a_code_that_may_not_be_sent_uses_1011() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(echo, config());
    for bad in [1005, 1006, 1015, 999, 5000] {
        let mut c = Client::connect(addr);
        let id = wait_open(&events);
        handle.close(id, CloseCode(bad), "bye").unwrap();
        assert_eq!(c.next(), Ev::Close(Some(1011), "bye".into()), "code {bad}");
        c.close(1011, "");
        c.expect_eof();
        let (gone, info) = wait_close(&events);
        assert_eq!((gone, info.code), (id, CloseCode::INTERNAL));
    }
    stop(&handle, join);
}

/// During a graceful shutdown a connection is given up at the shutdown
/// deadline, not at the (shorter) close timeout: a slow reader may still be
/// draining its queue.
#[test]
fn shutdown_waits_for_its_own_deadline_not_the_close_timeout() {
    let (echo, events) = Echo::new();
    let (cfg, clock) = clocked_config();
    let cfg = cfg
        .with_close_timeout(Duration::from_millis(200))
        .with_shutdown_timeout(Duration::from_millis(1200));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    wait_open(&events);
    handle.shutdown().unwrap();
    assert_eq!(c.expect_close(), Some(1001));
    // We never reply.
    step(&clock, 200);
    assert_eq!(c.next_within(QUIET), None, "given up at the close timeout");
    step(&clock, 999);
    assert_eq!(c.next_within(QUIET), None, "given up before the deadline");
    step(&clock, 1);
    c.expect_eof();
    join_within(join, Duration::from_secs(5));
    let (_, info) = wait_close(&events);
    assert_eq!(info.code, CloseCode::GOING_AWAY);
    assert!(!info.clean, "{info:?}");
}

/// The close timeout, in real time: a peer that never answers our close
/// frame is cut off after `close_timeout`.
#[test]
fn a_peer_that_never_answers_our_close_is_cut_off() {
    let (echo, events) = Echo::new();
    let (addr, handle, join) = start(
        echo,
        config().with_close_timeout(Duration::from_millis(300)),
    );
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    let t0 = Instant::now();
    handle.close(id, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    closed_by_us_uncleanly(&events, id, CloseCode::NORMAL);
    stop(&handle, join);
}

/// The same on a driven clock, to the millisecond; and a failed connection
/// whose peer never closes TCP is cut off at the close timeout too.
#[test]
fn close_timeouts_on_a_driven_clock() {
    let (echo, events) = Echo::new();
    let (cfg, clock) = clocked_config();
    let cfg = cfg.with_close_timeout(Duration::from_millis(500));
    let (addr, handle, join) = start(echo, cfg);
    let mut c = Client::connect(addr);
    let id = wait_open(&events);
    handle.close(id, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(c.expect_close(), Some(1000));
    step(&clock, 499);
    assert_eq!(
        c.next_within(QUIET),
        None,
        "cut off before the close timeout"
    );
    step(&clock, 1);
    c.expect_eof();
    assert!(!wait_close(&events).1.clean);

    // A peer that breaks the protocol gets the failure's close frame and
    // our FIN at once (RFC 6455 §7.1.7), and no reply is waited for; if it
    // never closes TCP, it is cut off at the close timeout.
    let mut c = Client::connect(addr);
    wait_open(&events);
    c.send_raw(&raw_frame(0x81, b"unmasked", None));
    c.expect_close_then_eof(1002);
    step(&clock, 499);
    let (tx, rx) = mpsc::channel();
    handle
        .call(move |ctx| {
            let _ = tx.send(ctx.connections());
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(TIMEOUT).unwrap(),
        1,
        "gone before the timeout"
    );
    step(&clock, 1);
    let (_, info) = wait_close(&events);
    assert_eq!(info.code, CloseCode::PROTOCOL);
    assert!(!info.clean, "{info:?}");
    drop(c);
    stop(&handle, join);
}

/// A thread that keeps the command channel full (here: closures that each
/// take 20 µs) does not keep the loop from accepting and upgrading others.
#[test]
fn a_busy_handle_producer_does_not_starve_the_loop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (echo, events) = Echo::new();
    let cfg = config().with_command_queue(64);
    let (addr, handle, join) = start(echo, cfg);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let producer = {
        let (h, stop_flag) = (handle.clone(), stop_flag.clone());
        std::thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                let _ = h.call(|_ctx| {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(20) {
                        std::hint::spin_loop();
                    }
                });
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let mut c = Client::connect(addr);
    wait_open(&events);
    c.send_text("still here?");
    assert_eq!(c.expect_text(), "still here?");
    let took = t0.elapsed();
    stop_flag.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Let the loop run what is still queued, so the shutdown command fits.
    std::thread::sleep(Duration::from_millis(200));
    stop(&handle, join);
}

/// Counts `wake` calls; on each, sends the messages another thread left in
/// `inbox` to every open connection, at most `per_wake` of them, and asks
/// to be woken again (`Ctx::wake`) while some are left.
struct Waker {
    inbox: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    per_wake: usize,
    wakes: mpsc::Sender<usize>,
    calls: usize,
}

impl Handler for Waker {
    type Conn = ();

    fn message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _msg: Message<'_>) {}

    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        self.calls += 1;
        let batch: Vec<String> = {
            let mut inbox = self.inbox.lock().unwrap();
            let n = inbox.len().min(self.per_wake);
            inbox.drain(..n).collect()
        };
        for text in &batch {
            ctx.broadcast(&Frame::text(text));
        }
        if !self.inbox.lock().unwrap().is_empty() {
            ctx.wake();
        }
        let _ = self.wakes.send(self.calls);
    }
}

#[test]
fn handle_wake_calls_the_handler_on_its_thread() {
    let inbox = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, wakes) = mpsc::channel();
    let handler = Waker {
        inbox: inbox.clone(),
        per_wake: 2,
        wakes: tx,
        calls: 0,
    };
    let (addr, handle, join) = start(handler, config());
    let mut client = Client::connect(addr);
    // The connection is open once the server answers a ping.
    client.ping(b"up");
    assert!(matches!(client.next_within(TIMEOUT), Some(Ev::Pong(_))));

    // Five messages and many wake-ups from another thread: the handler takes
    // two per call and wakes itself (`Ctx::wake`) for the rest, so all five
    // arrive, in order, over three calls at least. (That wake-ups coalesce
    // is a unit test of the flag: here it depends on thread timing.)
    inbox
        .lock()
        .unwrap()
        .extend((1..=5).map(|i| format!("m{i}")));
    let h = handle.clone();
    std::thread::spawn(move || {
        for _ in 0..100 {
            h.wake().unwrap();
        }
    })
    .join()
    .unwrap();
    for i in 1..=5 {
        assert_eq!(client.expect_text(), format!("m{i}"));
    }
    let mut calls = 0;
    while let Ok(n) = wakes.recv_timeout(Duration::from_millis(300)) {
        calls = n;
    }
    assert!(
        (3..=100).contains(&calls),
        "5 messages at 2 per call need 3 calls at least; got {calls}"
    );
    assert!(inbox.lock().unwrap().is_empty());
    let handler = stop(&handle, join);
    assert_eq!(handler.calls, calls);
    // A stopped loop says so.
    assert_eq!(handle.wake(), Err(wsmio::reactor::HandleError::Stopped));
}
