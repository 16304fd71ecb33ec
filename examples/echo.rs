//! Echo server: every text and binary message goes back to its sender.
//! Autobahn and the benchmarks run it.
//!
//! Usage: `cargo run --release --example echo [ADDR]` (default 127.0.0.1:9001);
//! `WSMIO_BUSY_POLL_US=N` turns on busy polling ([`wsmio::Config::busy_poll`]).

mod common;

use wsmio::{ConnId, Ctx, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, msg: Message<'_>) {
        let _ = ctx.send(id, msg);
    }
}

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr()?;
    // Autobahn sends 16 MiB messages (the default limit).
    let config = common::config()?;
    let server = Server::bind(addr, config)?;
    eprintln!("echo server listening on ws://{}", server.local_addr());
    server.run(Echo)?;
    Ok(())
}
