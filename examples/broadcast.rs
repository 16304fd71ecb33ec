//! Broadcast server: every message any client sends goes to every connected
//! client, the sender included. Each message is framed once and the same
//! bytes are queued to every connection.
//!
//! Usage: `cargo run --release --example broadcast [ADDR]` (default 127.0.0.1:9001);
//! `WSMIO_BUSY_POLL_US=N` turns on busy polling ([`Config::busy_poll`]).

use wsmio::{Config, ConnId, Ctx, Frame, Handler, Message, Server};

struct Broadcast;

impl Handler for Broadcast {
    fn message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, msg: Message<'_>) {
        ctx.broadcast(&Frame::new(msg));
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let addr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let config = Config::default()
        .with_max_connections(100_000)
        .with_busy_poll(busy_poll()?);
    let server = Server::bind(addr, config)?;
    eprintln!("broadcast server listening on ws://{}", server.local_addr());
    server.run(Broadcast)?;
    Ok(())
}

/// `WSMIO_BUSY_POLL_US` (microseconds, 0 or unset = off), as for `wsmio serve`.
fn busy_poll() -> std::io::Result<Option<std::time::Duration>> {
    match std::env::var("WSMIO_BUSY_POLL_US") {
        Err(_) => Ok(None),
        Ok(v) => match v.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(us) => Ok(Some(std::time::Duration::from_micros(us))),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("WSMIO_BUSY_POLL_US={v}: {e}"),
            )),
        },
    }
}
