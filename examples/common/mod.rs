//! What the example servers share: their command line and environment.

use std::io::{Error, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;

use wsmio::Config;

/// The listen address: the first argument, default 127.0.0.1:9001.
pub fn listen_addr() -> std::io::Result<SocketAddr> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    addr.parse()
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{addr}: {e}")))
}

/// The examples' config: room for the benchmarks' 10,000+ connections, and
/// busy polling from `WSMIO_BUSY_POLL_US` (microseconds, 0 or unset = off),
/// as for `wsmio serve`.
pub fn config() -> std::io::Result<Config> {
    let busy_poll = match std::env::var("WSMIO_BUSY_POLL_US") {
        Err(_) => None,
        Ok(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(us) => Some(Duration::from_micros(us)),
            Err(e) => {
                let msg = format!("WSMIO_BUSY_POLL_US={v}: {e}");
                return Err(Error::new(ErrorKind::InvalidInput, msg));
            }
        },
    };
    Ok(Config::default()
        .with_max_connections(100_000)
        .with_busy_poll(busy_poll))
}
