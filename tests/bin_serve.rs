//! The `wsmio` binary as an operator runs it: settings it must refuse,
//! running out of file descriptors, a second signal during a graceful
//! shutdown, and the memory a join storm costs. Each test starts its own server process on an ephemeral
//! 127.0.0.1 port and kills it (by PID) if it is still running at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_wsmio");

/// The server process; killed when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
    /// What it logged up to its listening line.
    early: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Start `cmd` (which runs `wsmio serve --listen 127.0.0.1:0 ...`) and
    /// wait for the address it logs.
    fn start(mut cmd: Command) -> Proc {
        cmd.env("RUST_LOG", "info")
            .env_remove("WSMIO_AUTH_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wsmio");
        let stderr = child.stderr.take();
        let (tx, log) = mpsc::channel();
        // From here on, a panic kills the process (Drop).
        let mut p = Proc {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            early: Vec::new(),
        };
        let stderr = stderr.expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = p.log.recv_timeout(left) else {
                panic!("no listening line; log: {:#?}", p.early);
            };
            let addr = line
                .split("ws://")
                .nth(1)
                .and_then(|rest| rest.split('/').next());
            if let Some(addr) = addr {
                p.addr = addr.parse().expect("listening address");
                p.early.push(line);
                return p;
            }
            p.early.push(line);
        }
    }

    /// Whether a line containing `what` was logged (waiting up to `within`).
    fn logged(&self, within: Duration, what: &str) -> bool {
        if self.early.iter().any(|l| l.contains(what)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Ok(l) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if l.contains(what) {
                return true;
            }
        }
        false
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve() -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    c
}

/// Run `wsmio serve` with `args`; it must refuse to start: exit status and
/// what it printed.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = serve();
    c.args(args).env_remove("WSMIO_AUTH_SECRET");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdin(Stdio::null()).output().expect("run wsmio");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn settings_that_cannot_work_are_refused_at_startup() {
    // An empty secret would turn on auth with a key anyone can sign with
    // (e.g. `WSMIO_AUTH_SECRET=${SECRET}` with SECRET unset).
    let (code, err) = refused(&["--auth-secret="], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auth secret is empty"), "{err}");
    let (code, err) = refused(&[], &[("WSMIO_AUTH_SECRET", "")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auth secret is empty"), "{err}");
    for (flag, value) in [
        ("--rate", "0"),
        ("--rate", "-5"),
        ("--rate", "NaN"),
        ("--burst", "0"),
        ("--max-connections", "0"),
        ("--max-topics", "0"),
        ("--max-message-size", "0"),
        ("--max-queued-bytes", "0"),
        ("--max-queued-bytes", "18446744073709551615"),
        ("--pong-timeout", "0"),
        ("--handshake-timeout", "0"),
        ("--allowed-hosts", "http://chat.example.com"),
        ("--allowed-hosts", "auto,chat.example.com"),
    ] {
        let (code, err) = refused(&[&format!("{flag}={value}")], &[]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
    // The token helper refuses an empty secret too.
    let out = Command::new(BIN)
        .args(["token", "--secret", "", "--user", "mallory"])
        .env_remove("WSMIO_AUTH_SECRET")
        .output()
        .expect("run wsmio token");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// Send an upgrade request and return the status line of the answer, or
/// `None` if nothing came within `limit`.
fn upgrade_status(addr: SocketAddr, limit: Duration) -> (Option<String>, TcpStream) {
    upgrade_status_as(addr, &addr.to_string(), "", limit)
}

/// [`upgrade_status`] for `target` (path and query) with `Host: host` and
/// `extra` header lines (each ending in CRLF).
fn upgrade_status_as(
    addr: SocketAddr,
    host: &str,
    extra: &str,
    limit: Duration,
) -> (Option<String>, TcpStream) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(limit)).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let line = text.lines().next().map(str::to_string);
    (line.filter(|l| !l.is_empty()), s)
}

/// With the open-file limit far below `--max-connections`, the server says
/// so at startup, and every connection past the limit gets a `503` at once
/// instead of hanging in the listen backlog.
#[test]
fn connections_past_the_open_file_limit_get_503() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 40 && exec \"$0\" serve --listen 127.0.0.1:0 --max-connections 100",
        BIN,
    ]);
    let p = Proc::start(cmd);
    let mut kept = Vec::new();
    let (mut upgraded, mut refused) = (0, 0);
    for i in 0..48 {
        let (status, s) = upgrade_status(p.addr, Duration::from_secs(5));
        match status.as_deref() {
            Some(l) if l.contains(" 101 ") => upgraded += 1,
            Some(l) if l.contains(" 503 ") => refused += 1,
            other => panic!("connection {i}: no answer ({other:?})"),
        }
        kept.push(s);
    }
    assert!(upgraded >= 20, "{upgraded} upgraded, {refused} refused");
    assert!(refused >= 8, "{upgraded} upgraded, {refused} refused");
    assert!(p.logged(Duration::from_secs(2), "open-file limit"));
    // Descriptors freed by clients that leave are used again.
    kept.clear();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _s) = upgrade_status(p.addr, Duration::from_secs(5));
    assert!(status.is_some_and(|l| l.contains(" 101 ")));
}

/// SIGINT starts a graceful shutdown that waits for clients (here one that
/// never answers the 1001); a second SIGINT ends the process at once.
#[test]
fn a_second_signal_exits_at_once() {
    let mut cmd = serve();
    cmd.args(["--shutdown-timeout", "30"]);
    let mut p = Proc::start(cmd);
    let (status, _silent) = upgrade_status(p.addr, Duration::from_secs(5));
    assert!(status.is_some_and(|l| l.contains(" 101 ")));
    p.signal("-INT");
    assert!(p.logged(Duration::from_secs(5), "shutting down"));
    assert_eq!(
        p.wait_exit(Duration::from_millis(500)),
        None,
        "exited early"
    );
    p.signal("-INT");
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(130));
}

/// On a loopback address the binary admits only local `Host` names by
/// default: a DNS-rebinding page (its own name re-pointed at 127.0.0.1, so
/// `Origin` and `Host` agree) is refused, the page's own local origin is
/// not, and `--allowed-hosts '*'` turns the check off.
#[test]
fn the_default_host_check_stops_dns_rebinding() {
    let limit = Duration::from_secs(5);
    let p = Proc::start(serve());
    let port = p.addr.port();
    let rebound = format!("rebind.example:{port}");
    let origin = format!("Origin: http://{rebound}\r\n");
    let (status, _) = upgrade_status_as(p.addr, &rebound, &origin, limit);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 403 Forbidden"));
    for host in [format!("localhost:{port}"), p.addr.to_string()] {
        let origin = format!("Origin: http://{host}\r\n");
        let (status, _) = upgrade_status_as(p.addr, &host, &origin, limit);
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 101 Switching Protocols"),
            "{host}"
        );
    }
    drop(p);

    let mut any = serve();
    any.args(["--allowed-hosts", "*"]);
    let p = Proc::start(any);
    let rebound = format!("rebind.example:{}", p.addr.port());
    let origin = format!("Origin: http://{rebound}\r\n");
    let (status, _) = upgrade_status_as(p.addr, &rebound, &origin, limit);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 101 Switching Protocols"));
}

/// `wsmio token --audience/--issuer` mints what `serve --token-audience/
/// --token-issuer` requires; a token without them is refused with 401.
#[test]
fn token_audience_and_issuer_from_the_command_line() {
    let secret = "a secret of at least thirty-two bytes";
    let mint = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["token", "--secret", secret, "--user", "u1"])
            .args(extra)
            .env_remove("WSMIO_AUTH_SECRET")
            .output()
            .expect("wsmio token");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut c = serve();
    c.args([
        "--auth-secret",
        secret,
        "--token-audience",
        "chat",
        "--token-issuer",
        "idp",
    ]);
    let p = Proc::start(c);
    let limit = Duration::from_secs(5);
    let host = p.addr.to_string();
    let try_token = |t: &str| {
        let auth = format!("Authorization: Bearer {t}\r\n");
        upgrade_status_as(p.addr, &host, &auth, limit).0
    };
    let good = mint(&["--audience", "chat", "--issuer", "idp"]);
    assert_eq!(
        try_token(&good).as_deref(),
        Some("HTTP/1.1 101 Switching Protocols")
    );
    for bad in [
        mint(&[]),
        mint(&["--audience", "other", "--issuer", "idp"]),
        mint(&["--audience", "chat", "--issuer", "other"]),
    ] {
        assert_eq!(
            try_token(&bad).as_deref(),
            Some("HTTP/1.1 401 Unauthorized")
        );
    }
}

/// A WebSocket client of the hub's `/ws`.
fn ws(addr: SocketAddr) -> common::Client {
    let hs = wsmio::proto::handshake::ClientHandshake::new(rand_key(), &[]);
    let req = hs.request(&addr.to_string(), "/ws", &[]);
    common::Client::handshake(common::tcp(addr), &req, &hs, 0)
        .unwrap_or_else(|r| panic!("refused: {r}"))
}

fn rand_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    getrandom::getrandom(&mut k).expect("random key");
    k
}

/// The server's resident memory, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The host's `ListenOverflows` (`/proc/net/netstat`): SYNs the kernel
/// dropped for a full accept queue (host-wide).
fn listen_overflows() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
}

/// N clients (1,000; `JOIN_STORM_N` for the benchmark's 5,000) join one
/// topic at once from 8 threads, each a member (past
/// `--presence-events-max` they get counts, not N² joins): all are
/// subscribed, no SYN is dropped, and the server's memory grows by a
/// bounded amount per member.
#[test]
fn a_join_storm_costs_bounded_memory_per_member() {
    let n: usize = std::env::var("JOIN_STORM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    const THREADS: usize = 8;
    let mut cmd = serve();
    cmd.args(["--max-connections", &(n + 100).to_string()]);
    // All from 127.0.0.1.
    cmd.args(["--max-connections-per-ip", "0"]);
    let p = Proc::start(cmd);
    let addr = p.addr;
    let mut warm = ws(addr);
    warm.send_text(r#"{"op":"sub","topic":"storm","id":1}"#);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(p.child.id());
    let overflows = listen_overflows();
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mine = (t..n).step_by(THREADS).count();
                let mut clients: Vec<common::Client> = (0..mine).map(|_| ws(addr)).collect();
                for c in &mut clients {
                    c.send_text(r#"{"op":"sub","topic":"storm","id":1}"#);
                }
                for c in &mut clients {
                    wait_sub_ack(c);
                }
                clients
            })
        })
        .collect();
    let clients: Vec<Vec<common::Client>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let took = start.elapsed();
    let dropped = listen_overflows().zip(overflows).map(|(a, b)| a - b);
    std::thread::sleep(Duration::from_millis(1500)); // the last presence_count
    let after = rss_kib(p.child.id());
    let per_member = after.saturating_sub(before) * 1024 / n as u64;
    eprintln!(
        "join storm of {n} from {THREADS} threads: all subscribed in {took:?}; host ListenOverflows \
         +{dropped:?}; server RSS {before} KiB -> {after} KiB, {per_member} B per member"
    );
    assert!(per_member <= 16 * 1024, "{per_member} B per member");
    drop(clients);
}

/// Read until the `storm` subscription's ack (presence events may come
/// first).
fn wait_sub_ack(c: &mut common::Client) {
    loop {
        match c.next_within(Duration::from_secs(30)) {
            Some(common::Ev::Text(t)) if t.contains(r#""op":"sub","topic":"storm""#) => return,
            Some(common::Ev::Text(_)) => {}
            other => panic!("no sub ack: {other:?}"),
        }
    }
}

/// Run `wsmio ARGS` to its end (bounded): exit status, stdout, stderr.
fn tool(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("WSMIO_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn wsmio");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsmio {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wsmio sub` and `wsmio pub` round trip through a hub with tokens
/// (`--token`, `WSMIO_TOKEN`), lines of standard input published one by
/// one, bad input refused with a reason, a missing token stopping with
/// the hub's 401, and `wsmio client` as a raw session.
#[test]
fn sub_pub_and_client_from_the_shell() {
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    let mut cmd = serve();
    cmd.args(["--auth-secret", SECRET]);
    let p = Proc::start(cmd);
    let url = format!("ws://{}/ws", p.addr);
    let (_, token, _) = tool(&["token", "--secret", SECRET, "--user", "sam"], &[], "");
    let token = token.trim().to_string();
    let env = [("WSMIO_TOKEN", token.as_str())];
    // A follower of two topics, until three deliveries.
    let mut sub = Command::new(BIN);
    sub.args(["sub", &url, "room", "news", "--count", "3"])
        .env("WSMIO_TOKEN", &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut sub = sub.spawn().expect("spawn sub");
    let mut err = BufReader::new(sub.stderr.take().unwrap());
    let mut subscribed = 0;
    let mut line = String::new();
    while subscribed < 2 {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "sub ended early");
        subscribed += usize::from(line.contains("subscribed at seq 0"));
    }
    let (code, out, e) = tool(&["pub", &url, "room", r#"{"n":1}"#], &env, "");
    assert_eq!(code, 0, "{e}");
    let ack: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&ack["seq"], &ack["topic"]),
        (&1.into(), &"room".into()),
        "{out}"
    );
    let (code, out, e) = tool(
        &["pub", "--token", &token, &url, "news", "-", "--string"],
        &[],
        "a\nb\n",
    );
    assert_eq!((code, out.lines().count()), (0, 2), "{out} {e}");
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let data: Vec<String> = got.iter().map(|v| v["data"].to_string()).collect();
    assert_eq!(data, [r#"{"n":1}"#, r#""a""#, r#""b""#]);
    assert!(got.iter().all(|v| v["from"] == "sam"));
    // Bad input, and no token: exit 1 with the reason.
    let (code, _, e) = tool(&["pub", &url, "room", "not json"], &env, "");
    assert!(code == 1 && e.contains("not JSON"), "{e}");
    let (code, _, e) = tool(&["pub", &url, "room", "1"], &[], "");
    assert!(code == 1 && e.contains("401"), "{e}");
    // A raw session: the welcome, then the answer to what we typed.
    let (code, out, e) = tool(
        &[
            "client",
            &url,
            "-H",
            &format!("Authorization: Bearer {token}"),
        ],
        &[],
        "{\"op\":\"presence\",\"topic\":\"room\",\"id\":7}\n",
    );
    assert_eq!(code, 0, "{e}");
    assert!(
        out.lines().next().unwrap().contains(r#""type":"welcome""#),
        "{out}"
    );
}
