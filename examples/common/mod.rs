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

/// The examples' config: room for the benchmarks' 10,000+ connections,
/// busy polling from `WSMIO_BUSY_POLL_US` (microseconds, 0 or unset = off),
/// as for `wsmio serve`, and, built with the `deflate` feature,
/// permessage-deflate offered with its defaults unless `WSMIO_DEFLATE=off`
/// (`WSMIO_DEFLATE_THRESHOLD=N`: compress messages from N bytes).
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
    let config = Config::default()
        .with_max_connections(100_000)
        .with_busy_poll(busy_poll);
    #[cfg(feature = "deflate")]
    let config = match deflate()? {
        Some(d) => config.with_deflate(d),
        None => config,
    };
    Ok(config)
}

/// permessage-deflate from `WSMIO_DEFLATE` (`on`, the default, or `off`)
/// and `WSMIO_DEFLATE_THRESHOLD`.
#[cfg(feature = "deflate")]
fn deflate() -> std::io::Result<Option<wsmio::reactor::DeflateSettings>> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidInput, what);
    match std::env::var("WSMIO_DEFLATE").as_deref() {
        Err(_) | Ok("on") => {}
        Ok("off") => return Ok(None),
        Ok(v) => return Err(invalid(format!("WSMIO_DEFLATE={v}: on or off"))),
    }
    let mut d = wsmio::reactor::DeflateSettings::default();
    if let Ok(v) = std::env::var("WSMIO_DEFLATE_THRESHOLD") {
        d.compression.min_size = v
            .parse()
            .map_err(|e| invalid(format!("WSMIO_DEFLATE_THRESHOLD={v}: {e}")))?;
    }
    Ok(Some(d))
}
