//! `wsmio serve`: the hub from its flags — the reactor's, the hub's and
//! the engine's settings, the open-file limit, the signals.

use std::time::Duration;

use wsmio::pubsub::auth::TokenRules;
use wsmio::pubsub::engine::redis::{RedisConfig, RedisEngine};
use wsmio::pubsub::{HostPolicy, Hub, HubConfig, OriginPolicy};
use wsmio::reactor::DeflateSettings;
use wsmio::{Config, FullQueuePolicy, Server};

use crate::serve_args::{EngineKind, ServeArgs, SlowConsumer, Switch};

/// The demo chat page served at `/`.
const DEMO_PAGE: &str = include_str!("demo.html");

pub fn serve(a: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    fit_open_file_limit((a.max_connections + a.max_pending_handshakes) as usize);
    let config = reactor_config(&a)?;
    let tls = config.serves_tls();
    let hub_config = hub_config(&a)?;
    if hub_config.auth_secret.is_none() {
        log::warn!("no --auth-secret: admitting anonymous users with generated ids");
        if hub_config.hosts == HostPolicy::Any {
            log::warn!("anonymous users and any Host name: a DNS-rebinding page can reach this hub; name the hosts with --allowed-hosts");
        }
    }
    let server = Server::bind(a.listen, config)?;
    // The engine before the "listening" line: a bad --redis-url stops here.
    let hub = match a.engine {
        EngineKind::Memory => Hub::new(hub_config),
        EngineKind::Redis => {
            let engine = RedisEngine::start(redis_config(&a), server.handle())?;
            Hub::with_engine(hub_config, Box::new(engine))
        }
    };
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    log::info!(
        "wsmio hub listening: {ws}://{0}/ws, demo {http}://{0}/, metrics {http}://{0}/metrics",
        server.local_addr()
    );
    shut_down_on_signals(server.handle())?;
    crate::trim::spawn(a.memory_trim_slack)?;
    let hub = server.run(hub)?;
    log::info!(
        "stopped: {} connections served, {} publishes",
        hub.metrics().connections_total,
        hub.metrics().publishes
    );
    Ok(())
}

/// The reactor's settings from the flags.
fn reactor_config(a: &ServeArgs) -> Result<Config, Box<dyn std::error::Error>> {
    let max_queued_bytes = a.max_queued_bytes as usize;
    let config = Config::default()
        .with_max_pending_handshakes(a.max_pending_handshakes as usize)
        .with_accepts_per_turn(a.accepts_per_turn as usize)
        .with_max_buffered_bytes(a.max_buffered_bytes as usize)
        .with_listen_backlog(a.listen_backlog)
        .with_max_connections(a.max_connections as usize)
        .with_max_message_size(a.max_message_size)
        .with_max_frame_size(a.max_message_size)
        .with_idle_timeout((a.idle_timeout > 0).then(|| Duration::from_secs(a.idle_timeout)))
        .with_pong_timeout(Duration::from_secs(a.pong_timeout))
        .with_handshake_timeout(Duration::from_secs(a.handshake_timeout))
        .with_max_queued_bytes(max_queued_bytes)
        .with_backpressure_limit(max_queued_bytes / 4)
        .with_full_queue_policy(match a.slow_consumer {
            SlowConsumer::Close => FullQueuePolicy::Close,
            SlowConsumer::Drop => FullQueuePolicy::Drop,
        })
        .with_shutdown_timeout(Duration::from_secs(a.shutdown_timeout))
        .with_busy_poll((a.busy_poll_us > 0).then(|| Duration::from_micros(a.busy_poll_us)))
        .with_shutdown_reason("server restarting, reconnect later");
    let config = match deflate_settings(a) {
        Some(d) => config.with_deflate(d),
        None => config,
    };
    Ok(match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            config.with_tls(wsmio::reactor::tls::server_config_from_pem(cert, key)?)
        }
        _ => config,
    })
}

/// permessage-deflate from the flags (`None`: `--deflate off`). No server
/// context takeover by default: a delivery is then compressed once and
/// the same bytes go to every subscriber that agreed to the extension.
fn deflate_settings(a: &ServeArgs) -> Option<DeflateSettings> {
    if a.deflate == Switch::Off {
        return None;
    }
    let mut d = DeflateSettings::default();
    d.negotiation.outgoing_context_takeover = a.deflate_server_context_takeover == Switch::On;
    d.negotiation.incoming_context_takeover = a.deflate_client_context_takeover == Switch::On;
    d.negotiation.outgoing_max_window_bits = a.deflate_server_max_window_bits;
    d.negotiation.incoming_max_window_bits = a.deflate_client_max_window_bits;
    d.compression.options.level = a.deflate_level;
    d.compression.min_size = usize::try_from(a.deflate_threshold).unwrap_or(usize::MAX);
    Some(d)
}

/// The hub's settings from the flags.
fn hub_config(a: &ServeArgs) -> Result<HubConfig, String> {
    Ok(HubConfig {
        node: a.node.clone(),
        auth_secret: a.auth_secret.clone().map(String::into_bytes),
        token_rules: TokenRules {
            audience: a.token_audience.clone(),
            issuer: a.token_issuer.clone(),
            leeway_secs: a.token_leeway,
        },
        origins: OriginPolicy::parse(&a.allowed_origins),
        hosts: HostPolicy::parse(&a.allowed_hosts, a.listen.ip().to_canonical().is_loopback())
            .map_err(|e| format!("--allowed-hosts: {e}"))?,
        history_len: a.history_len,
        history_age: Duration::from_secs(a.history_age),
        max_history_bytes: a.max_history_bytes,
        max_topics_per_conn: a.max_topics_per_conn,
        max_topics: a.max_topics as usize,
        max_inboxes: a.max_inboxes as usize,
        max_connections_per_user: a.max_connections_per_user,
        max_connections_per_ip: a.max_connections_per_ip,
        max_subscriptions_per_user: a.max_subscriptions_per_user,
        max_topics_per_user: a.max_topics_per_user,
        max_topics_per_ip: a.max_topics_per_ip,
        session_ttl: Duration::from_secs(a.session_ttl),
        max_positions_per_user: a.max_positions_per_user as usize,
        max_positions: a.max_positions as usize,
        idempotency_window: Duration::from_secs(a.idempotency_window),
        max_idempotency_keys: a.max_idempotency_keys as usize,
        presence_events_max: a.presence_events_max,
        redeliver_after: (a.redeliver_after > 0).then(|| Duration::from_secs(a.redeliver_after)),
        redeliver_attempts: a.redeliver_attempts,
        requests_per_turn: a.requests_per_turn as usize,
        fanout_per_turn: a.fanout_per_turn as usize,
        fanout_bytes_per_turn: a.fanout_bytes_per_turn as usize,
        max_fanout_backlog: a.max_fanout_backlog as usize,
        rate_per_sec: a.rate,
        rate_burst: a.burst,
        index_html: Some(DEMO_PAGE),
        ..HubConfig::default()
    })
}

/// The Redis engine's settings from the flags.
fn redis_config(a: &ServeArgs) -> RedisConfig {
    RedisConfig {
        url: a.redis_url.clone(),
        prefix: a.redis_prefix.clone(),
        node: a.node.clone(),
        history_len: a.history_len,
        history_age: Duration::from_secs(a.history_age),
        node_ttl: Duration::from_secs(a.node_ttl),
        timeout: Duration::from_secs(a.redis_timeout),
        max_cache_bytes: a.max_history_bytes,
        session_ttl: Duration::from_secs(a.session_ttl),
        max_positions_per_user: a.max_positions_per_user as usize,
        idempotency_window: Duration::from_secs(a.idempotency_window),
        ..RedisConfig::default()
    }
}

/// SIGINT/SIGTERM: a graceful shutdown (close 1001 to everyone, drain,
/// exit 0); a second one exits at once (status 130).
fn shut_down_on_signals(handle: wsmio::Handle) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(sig) = signals.next() {
            log::info!("signal {sig}: shutting down (again to exit at once)");
            let _ = handle.shutdown();
        }
        // Keep the handlers installed: a second signal ends the wait.
        if let Some(sig) = signals.next() {
            log::warn!("signal {sig} again: exiting without waiting for clients");
            std::process::exit(130);
        }
    });
    Ok(())
}

/// File descriptors needed besides the connections: std streams, epoll,
/// waker, listener, the spare accept descriptor, signal pipe, TLS files.
const FD_HEADROOM: libc::rlim_t = 64;

/// Raise the soft open-file limit (often 1024) towards the hard limit so
/// that `sockets` (connections and handshakes) fit; warn if they cannot
/// (connections past the limit are refused with 503).
fn fit_open_file_limit(sockets: usize) {
    let want = (sockets as libc::rlim_t).saturating_add(FD_HEADROOM);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur < want {
        log::warn!(
            "open-file limit {} (hard {}) is below --max-connections + --max-pending-handshakes \
             ({sockets}) + {FD_HEADROOM}: connections past it are refused with 503",
            lim.rlim_cur,
            lim.rlim_max
        );
    }
}
