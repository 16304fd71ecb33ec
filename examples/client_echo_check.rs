//! The loop's client against a third-party server: connects to an echo
//! server over `ws://` and `wss://` from one loop, offering
//! permessage-deflate (RFC 7692), and checks that the server agreed to it
//! and that every message comes back intact. `tests/python/run.sh` runs it
//! against the Python `websockets` server (`tests/python/echo_server.py`,
//! which first sends the extensions it agreed to, then echoes).
//!
//! Usage: `cargo run --release --features tls,deflate --example client_echo_check WS_URL WSS_URL CA.pem`
//! (exits non-zero, saying why, on any failure; gives up after 30 s).

use std::path::Path;
use std::time::Duration;

use wsmio::proto::extension::DeflateConfig;
use wsmio::reactor::tls_client::{client_config, roots_from_pem};
use wsmio::{
    ClientOptions, ClientRequest, CloseCode, CloseInfo, Config, ConnId, ConnectError, Ctx, Handler,
    Message, Server,
};

/// The whole check gives up after this long.
const LIMIT: Duration = Duration::from_secs(30);

/// What each connection sends, in order; every one must come back.
fn messages() -> Vec<(bool, Vec<u8>)> {
    vec![
        (true, b"hello".to_vec()),
        (true, "a compressible line, ".repeat(2000).into_bytes()),
        (false, (0..=255u8).cycle().take(100_000).collect()),
        (false, Vec::new()),
    ]
}

/// One connection's progress.
#[derive(Default)]
struct Progress {
    /// The server's first message: the extensions it agreed to.
    extensions: Option<String>,
    /// Echoes received so far.
    echoed: usize,
}

struct Check {
    urls: Vec<String>,
    options: ClientOptions,
    open: usize,
    done: usize,
    failed: Option<String>,
}

impl Check {
    fn fail(&mut self, ctx: &mut Ctx<'_, Progress>, why: String) {
        self.failed.get_or_insert(why);
        ctx.shutdown();
    }
}

impl Handler for Check {
    type Conn = Progress;

    fn wake(&mut self, ctx: &mut Ctx<'_, Progress>) {
        for url in self.urls.clone() {
            let req = ClientRequest::new(&url).map(|r| r.with_options(self.options.clone()));
            if let Err(e) = req.and_then(|r| ctx.connect(r)) {
                return self.fail(ctx, format!("{url}: {e}"));
            }
            self.open += 1;
        }
        let _ = ctx.set_timer(LIMIT, 0);
    }

    fn open(&mut self, ctx: &mut Ctx<'_, Progress>, id: ConnId) {
        for (text, m) in messages() {
            let _ = match text {
                true => ctx.send_text(id, std::str::from_utf8(&m).unwrap_or_default()),
                false => ctx.send_binary(id, &m),
            };
        }
    }

    fn message(&mut self, ctx: &mut Ctx<'_, Progress>, id: ConnId, msg: Message<'_>) {
        let Some(p) = ctx.conn(id) else { return };
        if p.extensions.is_none() {
            let ext = String::from_utf8_lossy(msg.as_bytes()).into_owned();
            if !ext.starts_with("permessage-deflate") {
                return self.fail(ctx, format!("permessage-deflate not agreed: {ext:?}"));
            }
            p.extensions = Some(ext);
            return;
        }
        let expected = messages();
        let (text, want) = &expected[p.echoed];
        if msg.is_text() != *text || msg.as_bytes() != want.as_slice() {
            let n = p.echoed;
            return self.fail(ctx, format!("echo {n} differs"));
        }
        p.echoed += 1;
        if p.echoed == expected.len() {
            ctx.close(id, CloseCode::NORMAL, "checked");
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_, Progress>, id: ConnId, info: CloseInfo) {
        let echoed = ctx.conn(id).map_or(0, |p| p.echoed);
        if echoed != messages().len() || !info.clean {
            return self.fail(ctx, format!("closed after {echoed} echoes: {info:?}"));
        }
        self.done += 1;
        if self.done == self.open {
            ctx.shutdown();
        }
    }

    fn connect_failed(&mut self, ctx: &mut Ctx<'_, Progress>, _: ConnId, e: ConnectError) {
        self.fail(ctx, format!("connect: {e}"));
    }

    fn timer(&mut self, ctx: &mut Ctx<'_, Progress>, _: u64) {
        self.fail(ctx, format!("not done within {LIMIT:?}"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ws, wss, ca] = args.as_slice() else {
        eprintln!("usage: client_echo_check WS_URL WSS_URL CA.pem");
        std::process::exit(2);
    };
    let tls = match roots_from_pem(Path::new(ca)).and_then(client_config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("client_echo_check: {e}");
            std::process::exit(1);
        }
    };
    let options = ClientOptions::default()
        .with_deflate(DeflateConfig::default())
        .with_tls(tls);
    let check = Check {
        urls: vec![ws.clone(), wss.clone()],
        options,
        open: 0,
        done: 0,
        failed: None,
    };
    let config = Config::default().with_close_timeout(Duration::from_secs(2));
    let run = Server::new(config).and_then(|lp| {
        lp.handle().wake().map_err(std::io::Error::other)?;
        lp.run(check)
    });
    match run {
        Ok(Check {
            failed: None, done, ..
        }) => println!("client_echo_check: {done} connections echoed everything"),
        Ok(Check {
            failed: Some(why), ..
        }) => {
            eprintln!("client_echo_check: {why}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("client_echo_check: {e}");
            std::process::exit(1);
        }
    }
}
