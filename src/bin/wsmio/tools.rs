//! `wsmio sub`, `wsmio pub` and `wsmio client`: the hub and any WebSocket
//! server from the shell. `sub` and `pub` run the reconnecting hub client
//! (`pubsub::hub_client::BlockingHub`); `client` is a raw session on
//! `reactor::BlockingClient` (lines in, messages out), like websocat.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use wsmio::pubsub::hub_client::{BlockingHub, Event, HubClientConfig, Position, Since, SubOptions};
use wsmio::reactor::{BlockingClient, ClientOptions, Incoming};

/// What every client command shares.
#[derive(clap::Args)]
pub struct Connection {
    /// Bearer token (a JWT signed with the hub's --auth-secret; `wsmio
    /// token` makes one). Without it the hub takes you as anonymous.
    #[arg(long, env = "WSMIO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA(s) to trust for wss:// (default: the system's
    /// trusted roots).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Seconds to connect and complete the handshake.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Do not offer permessage-deflate (offered by default).
    #[arg(long)]
    no_deflate: bool,
}

impl Connection {
    fn options(&self) -> Result<ClientOptions, String> {
        let t = Duration::from_secs(self.connect_timeout.max(1));
        let mut o = ClientOptions::default()
            .with_connect_timeout(t)
            .with_handshake_timeout(t);
        if let Some(path) = &self.ca_file {
            let roots =
                wsmio::reactor::tls_client::roots_from_pem(path).map_err(|e| e.to_string())?;
            o = o.with_tls(
                wsmio::reactor::tls_client::client_config(roots).map_err(|e| e.to_string())?,
            );
        }
        if !self.no_deflate {
            o = o.with_deflate(wsmio::proto::extension::DeflateConfig::default());
        }
        Ok(o)
    }

    fn hub_config(&self, url: &str) -> HubClientConfig {
        let c = HubClientConfig::new(url);
        match &self.token {
            Some(t) => c.with_token(t.clone()),
            None => c,
        }
    }
}

/// `wsmio sub`.
#[derive(clap::Args)]
pub struct SubArgs {
    /// The hub's WebSocket endpoint, e.g. ws://127.0.0.1:9001/ws.
    url: String,
    /// Topics to follow (`@user` for your inbox).
    #[arg(required = true)]
    topics: Vec<String>,
    /// Start from: `acked` (your last acknowledged position, on any
    /// device) or `EPOCH:SEQ` (after that delivery). Default: new ones.
    #[arg(long)]
    since: Option<String>,
    /// Acknowledge what was printed (so `--since acked` resumes after it).
    #[arg(long)]
    ack: bool,
    /// Exit after this many deliveries.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    conn: Connection,
}

/// `wsmio pub`.
#[derive(clap::Args)]
pub struct PubArgs {
    /// The hub's WebSocket endpoint, e.g. ws://127.0.0.1:9001/ws.
    url: String,
    /// The topic (`@user` is not one: direct messages are `--to`).
    topic: String,
    /// The payload: one JSON value (`'{"text":"hi"}'`, `42`, `'"a string"'`),
    /// or `-` for one JSON value per line of standard input.
    data: String,
    /// Send DATA as a JSON string instead (no quoting needed).
    #[arg(long)]
    string: bool,
    /// Seconds to wait for each ack (through reconnects: the publish
    /// keeps its idempotency key, so it is stored once).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    conn: Connection,
}

/// `wsmio client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Any WebSocket URL (ws:// or wss://).
    url: String,
    /// Subprotocols to offer, in order.
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Extra request headers, `Name: value`.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

/// `wsmio sub`: print each delivery as one JSON line on standard output;
/// what happens to the connection goes to the log (standard error).
pub fn sub(a: SubArgs) -> Result<(), String> {
    let since = match a.since.as_deref() {
        None => None,
        Some("acked") => Some(Since::Acked),
        Some(p) => {
            let (epoch, seq) = p
                .rsplit_once(':')
                .ok_or("--since is `acked` or EPOCH:SEQ")?;
            let seq = seq.parse().map_err(|_| "--since: SEQ must be a number")?;
            Some(Since::From(Position::new(epoch, seq)))
        }
    };
    let mut hub = BlockingHub::new(a.conn.hub_config(&a.url), a.conn.options()?);
    for t in &a.topics {
        let opts = SubOptions {
            since: since.clone(),
            ..SubOptions::default()
        };
        hub.client()
            .subscribe(t, opts)
            .map_err(|e| format!("{t}: {e}"))?;
    }
    let mut printed = 0u64;
    let out = std::io::stdout();
    loop {
        let Some(ev) = hub.next_event(Duration::from_secs(3600)) else {
            continue;
        };
        match ev {
            Event::Message(m) => {
                let data: serde_json::Value =
                    serde_json::from_str(&m.data).unwrap_or(serde_json::Value::Null);
                let line = json!({"topic": m.topic, "seq": m.seq, "epoch": m.epoch,
                    "from": m.from, "ts": m.ts, "data": data});
                let mut o = out.lock();
                if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
                    return Ok(()); // the reader went away (a closed pipe)
                }
                if a.ack {
                    hub.client().ack(&m.topic, &m.epoch, m.seq);
                }
                printed += 1;
                if a.count.is_some_and(|n| printed >= n) {
                    hub.close(Duration::from_secs(2));
                    return Ok(());
                }
            }
            Event::Stopped { reason } => return Err(format!("stopped: {reason}")),
            other => log_event(&other),
        }
    }
}

/// What `sub` and `pub` say about the connection, on standard error.
fn log_event(ev: &Event) {
    match ev {
        Event::Welcome(w) => log::info!("connected as {} (node {})", w.user, w.node),
        Event::Subscribed(s) if s.resumed => log::info!(
            "{}: resumed (recovered: {}, lost: {}, replayed: {})",
            s.topic,
            s.recovered,
            s.lost,
            s.replayed
        ),
        Event::Subscribed(s) => log::info!("{}: subscribed at seq {}", s.topic, s.seq),
        Event::SubscribeFailed {
            topic,
            code,
            message,
            ..
        } => {
            log::error!("{topic}: {code}: {message}")
        }
        Event::Gap {
            topic, from, to, ..
        } => log::warn!("{topic}: messages {from}-{to} lost"),
        Event::Reset { topic, epoch, .. } => {
            log::warn!("{topic}: numbering started over ({epoch})")
        }
        Event::Disconnected { reason } => log::warn!("disconnected: {reason:?}"),
        Event::Reconnecting { attempt, delay } => {
            log::info!("reconnecting in {delay:?} (attempt {attempt})")
        }
        Event::TokenNeeded => log::error!("the token expired; start again with a fresh one"),
        Event::Error { code, message, .. } => log::warn!("{code}: {message}"),
        _ => {}
    }
}

/// `wsmio pub`: publish, print the ack as one JSON line, exit 0; a refusal
/// or no ack in time exits 1.
pub fn publish(a: PubArgs) -> Result<(), String> {
    let mut hub = BlockingHub::new(a.conn.hub_config(&a.url), a.conn.options()?);
    let timeout = Duration::from_secs(a.timeout.max(1));
    let send = |hub: &mut BlockingHub, raw: &str| -> Result<(), String> {
        let data = match a.string {
            true => serde_json::Value::String(raw.to_string()).to_string(),
            false => {
                serde_json::from_str::<serde_json::Value>(raw)
                    .map_err(|e| format!("DATA is not JSON ({e}); use --string for text"))?;
                raw.to_string()
            }
        };
        let ack = hub
            .publish_wait(&a.topic, &data, timeout)
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            json!({"topic": ack.topic, "seq": ack.seq, "epoch": ack.epoch, "duplicate": ack.duplicate})
        );
        Ok(())
    };
    let result = if a.data == "-" {
        let stdin = std::io::stdin();
        let mut r = Ok(());
        for line in stdin.lock().lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            r = send(&mut hub, line.trim());
            if r.is_err() {
                break;
            }
        }
        r
    } else {
        send(&mut hub, &a.data)
    };
    hub.close(Duration::from_secs(2));
    result
}

/// `wsmio client`: lines of standard input go out as text messages;
/// messages come out on standard output (binary ones as a note). End of
/// input closes with 1000; the server's close ends the session.
pub fn client(a: ClientArgs) -> Result<(), String> {
    let mut options = a.conn.options()?;
    options.protocols = a.protocols.clone();
    options.origin = a.origin.clone();
    for h in &a.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: Name: value"))?;
        options
            .headers
            .push((n.trim().to_string(), v.trim().to_string()));
    }
    if let Some(t) = &a.conn.token {
        options
            .headers
            .push(("Authorization".into(), format!("Bearer {t}")));
    }
    let mut ws = BlockingClient::connect(&a.url, &options).map_err(|e| e.to_string())?;
    log::info!(
        "connected to {}{}",
        a.url,
        ws.protocol()
            .map(|p| format!(" (protocol {p})"))
            .unwrap_or_default()
    );
    let lines = stdin_lines();
    let started = Instant::now();
    loop {
        match lines.try_recv() {
            Ok(line) => ws.send_text(&line).map_err(|e| e.to_string())?,
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                ws.close(1000, "").map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
        match ws.recv(Some(Duration::from_millis(20))) {
            None => {}
            Some(Incoming::Text(t)) => println!("{t}"),
            Some(Incoming::Binary(b)) => println!("<binary message, {} bytes>", b.len()),
            Some(Incoming::Closed { code, reason }) => {
                log::info!("closed after {:?}: {code:?} {reason}", started.elapsed());
                return match code {
                    Some(1000) | Some(1001) => Ok(()),
                    Some(c) => Err(format!("closed with {c}: {reason}")),
                    None => Err(reason),
                };
            }
            Some(_) => {}
        }
    }
}

/// Lines of standard input, from a thread of their own (a closed channel:
/// end of input).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
