//! Helpers for the cluster tests (`tests/cluster.rs`): a real
//! `redis-server` on a free port in a temporary directory (AOF on), and hub
//! nodes as `wsmio serve --engine redis` processes. Everything started here
//! is stopped by PID when dropped; nothing depends on a Redis already
//! running.
//!
//! `redis-server` comes from `$REDIS_SERVER` or the `PATH` (Debian's
//! package; `tests/run-all.sh` installs it). Without it the tests fail,
//! saying so: they are never skipped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The hub binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wsmio");

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn redis_server() -> String {
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{bin} not found: the cluster tests need Debian's redis-server \
         (apt-get install redis-server; tests/run-all.sh installs it), or set REDIS_SERVER"
    );
    bin
}

/// Send `sig` to `pid` (a process this test started).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) only sends a signal; the pid is a child of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Wait (bounded) for `child` to exit; true if it did.
fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let mut b = [0u8; 6];
        getrandom::getrandom(&mut b).expect("random");
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let p = std::env::temp_dir().join(format!("wsmio-{what}-{name}"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of our own.
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Start one on a free port, AOF on (`appendfsync everysec`, fsync at
    /// shutdown), no RDB snapshots.
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: TempDir::new("redis"),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let bin = redis_server();
        let log = self.dir.0.join("redis.log");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}; its log:\n{}",
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether it answers `PING`.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Run one command (inline form) and return the raw reply.
    pub fn cmd(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Stop it as an operator would (SIGTERM: Redis fsyncs the AOF and
    /// exits).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            if !wait_exit(&mut c, Duration::from_secs(10)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Start it again on the same port and directory (it reloads the AOF).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A hub node: `wsmio serve --engine redis`.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: mpsc::Receiver<String>,
    /// Everything it logged so far (read by [`Node::logged`]).
    pub lines: Vec<String>,
}

/// The secret the cluster tests sign tokens with.
pub const SECRET: &str = "hub-test-secret";

impl Node {
    /// Start node `name` on a free port against `redis_url`, with tokens
    /// signed by [`SECRET`], no rate limit, and `extra` flags.
    pub fn start(name: &str, redis_url: &str, extra: &[&str]) -> Node {
        Node::start_on(name, "127.0.0.1:0", redis_url, extra)
    }

    /// The same on a given address (`127.0.0.1:0` for a free port), so
    /// that a restarted node can take its predecessor's port.
    pub fn start_on(name: &str, listen: &str, redis_url: &str, extra: &[&str]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", listen, "--engine", "redis"])
            .args(["--redis-url", redis_url, "--node", name])
            .args([
                "--auth-secret",
                SECRET,
                "--rate",
                "1000000",
                "--burst",
                "1000000",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("WSMIO_AUTH_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wsmio");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut n = Node {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            log,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = n.log.recv_timeout(left) else {
                panic!("node {name}: no listening line; log: {:#?}", n.lines);
            };
            let addr = line.split("ws://").nth(1).and_then(|r| r.split('/').next());
            n.lines.push(line.clone());
            if let Some(a) = addr {
                n.addr = a.parse().expect("listening address");
                break;
            }
        }
        n.wait_ready(Duration::from_secs(10));
        n
    }

    /// The status line and body of `GET path`.
    pub fn get(&self, path: &str) -> (String, String) {
        let Ok(mut s) = TcpStream::connect(self.addr) else {
            return (String::new(), String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let _ = s.write_all(req.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.lines().next().unwrap_or_default().to_string();
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// Whether `/readyz` says ready.
    pub fn ready(&self) -> bool {
        self.get("/readyz").0.contains(" 200 ")
    }

    /// Wait (bounded) until `/readyz` says ready.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.ready() {
            assert!(Instant::now() < deadline, "node {} never ready", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A metric's value from `/metrics` (0 if absent).
    pub fn metric(&self, key: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether a line containing `what` was logged (waiting up to `within`).
    pub fn logged(&mut self, within: Duration, what: &str) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.lines.iter().any(|l| l.contains(what)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) => self.lines.push(l),
                Err(_) => return false,
            }
        }
    }

    /// What the node logged so far and its engine metrics, for a failing
    /// test's message.
    pub fn diagnostics(&mut self) -> String {
        while let Ok(l) = self.log.try_recv() {
            self.lines.push(l);
        }
        let (_, metrics) = self.get("/metrics");
        let engine: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("wsmio_engine") || l.starts_with("wsmio_ready"))
            .collect();
        format!(
            "node {} log:\n{}\nmetrics:\n{}",
            self.name,
            self.lines.join("\n"),
            engine.join("\n")
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Graceful stop (SIGTERM); waits for the exit (bounded).
    pub fn stop(mut self) {
        signal(self.child.id(), libc::SIGTERM);
        assert!(
            wait_exit(&mut self.child, Duration::from_secs(15)),
            "node {} did not stop",
            self.name
        );
    }

    /// `kill -9`: no goodbye, no close frames.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
