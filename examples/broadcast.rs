//! Broadcast server: every message any client sends goes to every connected
//! client, the sender included. Each message is framed once and the same
//! bytes are queued to every connection.
//!
//! Usage: `cargo run --release --example broadcast [ADDR]` (default 127.0.0.1:9001);
//! `WSMIO_BUSY_POLL_US=N` turns on busy polling ([`wsmio::Config::busy_poll`]).

mod common;

use wsmio::{ConnId, Ctx, Frame, Handler, Message, Server};

struct Broadcast;

impl Handler for Broadcast {
    type Conn = ();

    fn message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, msg: Message<'_>) {
        ctx.broadcast(&Frame::new(msg));
    }
}

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr()?;
    let config = common::config()?;
    let server = Server::bind(addr, config)?;
    eprintln!("broadcast server listening on ws://{}", server.local_addr());
    server.run(Broadcast)?;
    Ok(())
}
