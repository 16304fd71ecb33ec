//! Autobahn client mode through the loop's client (`Ctx::connect`): one
//! `mio` loop with no listener runs the suite's cases one after another
//! against `wstest -m fuzzingserver` — it asks for the case count, runs
//! every case (echoing each message back, as the suite expects of a
//! client), then asks the suite to write its reports.
//!
//! Usage: `cargo run --release --features deflate --example autobahn_client [HOST:PORT] [AGENT]`
//! (default `127.0.0.1:9002`, agent `wsmio`). `autobahn/run.sh` runs it.
//!
//! Everything protocol-related is the crate's: the opening handshake
//! (RFC 6455 §4.1, offering permessage-deflate, RFC 7692) in
//! `reactor/client_handshake.rs`, then the protocol core in the client role
//! (the same `proto::connection::receive` the server side and the fuzzers
//! run), which refuses masked server frames (§5.1), masks every frame we
//! send (§5.3) and decides the automatic replies. This file only echoes
//! messages and moves on to the next case when one ends.

use std::time::Duration;

use wsmio::proto::deflate::{Compression, DeflateOptions, DEFAULT_LEVEL, DEFAULT_MEM_LEVEL};
use wsmio::proto::extension::DeflateConfig;
use wsmio::{
    ClientOptions, ClientRequest, CloseInfo, Config, ConnId, ConnectError, Ctx, Handler, Message,
    Server,
};

/// A case that has not ended by then is abandoned (the suite's own
/// timeouts are shorter, and its longest cases take about a second here;
/// this only keeps a broken client from hanging the run): the loop's
/// heartbeat closes a connection silent this long.
const CASE_IDLE: Duration = Duration::from_secs(20);
/// The suite's largest messages are 16 MiB (cases 9.x); room for one more
/// in each direction.
const MAX_MESSAGE: usize = 32 << 20;
/// How echoes are compressed when permessage-deflate is agreed: every
/// message, whatever its size (`min_size` 0), at the default level.
const ECHO_COMPRESSION: Compression = Compression {
    options: DeflateOptions {
        level: DEFAULT_LEVEL,
        mem_level: DEFAULT_MEM_LEVEL,
    },
    min_size: 0,
};

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `/getCaseCount`: one text message, the number of cases.
    Count,
    /// `/runCase?case=N`: echo everything.
    Case(u32),
    /// `/updateReports`: the suite writes its reports, then closes.
    Reports,
}

struct Runner {
    base: String,
    agent: String,
    stage: Stage,
    count: Option<u32>,
    /// Set when the run cannot go on (no case count, reports not written).
    failed: Option<String>,
}

impl Runner {
    /// Open the connection for the current stage.
    fn connect(&mut self, ctx: &mut Ctx<'_>) {
        let path = match self.stage {
            Stage::Count => "/getCaseCount".to_string(),
            Stage::Case(n) => format!("/runCase?case={n}&agent={}", self.agent),
            Stage::Reports => format!("/updateReports?agent={}", self.agent),
        };
        let options = ClientOptions::default()
            .with_deflate(DeflateConfig::default())
            .with_compression(ECHO_COMPRESSION);
        let req = ClientRequest::new(&format!("ws://{}{path}", self.base))
            .map(|r| r.with_options(options))
            .and_then(|r| ctx.connect(r));
        if let Err(e) = req {
            self.stop(ctx, format!("{path}: {e}"));
        }
    }

    /// The current stage's connection ended: on to the next.
    fn ended(&mut self, ctx: &mut Ctx<'_>) {
        let count = self.count.unwrap_or(0);
        self.stage = match self.stage {
            Stage::Count if count == 0 => {
                return self.stop(ctx, "no case count from the suite".into());
            }
            Stage::Count => {
                eprintln!("autobahn_client: {count} cases on {}", self.base);
                Stage::Case(1)
            }
            Stage::Case(n) if n < count => Stage::Case(n + 1),
            Stage::Case(_) => Stage::Reports,
            Stage::Reports => {
                eprintln!("autobahn_client: reports updated");
                return ctx.shutdown();
            }
        };
        self.connect(ctx);
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>, why: String) {
        self.failed = Some(why);
        ctx.shutdown();
    }
}

impl Handler for Runner {
    type Conn = ();

    /// The first turn: start.
    fn wake(&mut self, ctx: &mut Ctx<'_>) {
        self.connect(ctx);
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        match (self.stage, msg) {
            (Stage::Count, Message::Text(t)) => self.count = t.trim().parse().ok(),
            // Compressed when permessage-deflate was agreed (RFC 7692 §6);
            // queued after the automatic replies to what came before it.
            _ => {
                let _ = ctx.send(id, msg);
            }
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, _info: CloseInfo) {
        self.ended(ctx);
    }

    fn connect_failed(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, e: ConnectError) {
        match self.stage {
            // A refused or broken case is the suite's to judge; go on.
            Stage::Case(n) => {
                eprintln!("autobahn_client: case {n}: {e}");
                self.ended(ctx);
            }
            _ => self.stop(ctx, e.to_string()),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "127.0.0.1:9002".into());
    let agent = args.next().unwrap_or_else(|| "wsmio".into());
    let config = Config::default()
        .with_max_message_size(MAX_MESSAGE as u64)
        .with_max_frame_size(MAX_MESSAGE as u64)
        .with_max_buffered_bytes(2 * MAX_MESSAGE)
        .with_max_queued_bytes(2 * MAX_MESSAGE)
        .with_backpressure_limit(2 * MAX_MESSAGE)
        .with_idle_timeout(Some(CASE_IDLE))
        .with_pong_timeout(Duration::from_secs(5))
        .with_close_timeout(Duration::from_secs(2));
    let runner = Runner {
        base,
        agent,
        stage: Stage::Count,
        count: None,
        failed: None,
    };
    let run = Server::new(config).and_then(|lp| {
        lp.handle().wake().map_err(std::io::Error::other)?;
        lp.run(runner)
    });
    match run {
        Ok(Runner { failed: None, .. }) => {}
        Ok(Runner {
            failed: Some(why), ..
        }) => {
            eprintln!("autobahn_client: {why}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            std::process::exit(1);
        }
    }
}
