//! The Redis engine's counters, shared by its threads and rendered in
//! `/metrics`: round trips and their latency, errors by kind, reconnects,
//! operations waiting.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the round-trip latency buckets, in microseconds.
const BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000,
];

/// Errors by kind.
#[derive(Debug, Default)]
pub(super) struct Errors {
    /// Connection failures (connect, read, write, timeout).
    pub io: AtomicU64,
    /// Error replies from Redis.
    pub server: AtomicU64,
    /// Operations answered `unavailable` (not sent, or sent in a pipeline
    /// that failed).
    pub unavailable: AtomicU64,
}

/// The counters.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Operations queued for the command thread and not yet sent.
    pub pending: AtomicI64,
    /// Reconnects of either connection.
    pub reconnects: AtomicU64,
    /// Channel messages received.
    pub messages: AtomicU64,
    /// Publishes sent to Redis.
    pub publishes: AtomicU64,
    /// Pipelines sent (round trips).
    pub round_trips: AtomicU64,
    /// Commands in them.
    pub commands: AtomicU64,
    /// Histories fetched to fill a hole in a feed.
    pub fills: AtomicU64,
    /// Deliveries reported lost to local subscribers (gone from history).
    pub lost: AtomicU64,
    /// Acks not stored: over the per-user limit, or lost with a
    /// connection (later acks store newer positions).
    pub acks_refused: AtomicU64,
    pub errors: Errors,
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Stats {
    /// A pipeline of `commands` took `d`.
    pub fn round_trip(&self, d: Duration, commands: usize) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
    }

    /// The Prometheus text.
    pub fn render(&self, ready: bool, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let pending = self.pending.load(Ordering::Relaxed).max(0) as u64;
        let samples = [
            (
                "wsmio_engine_ready",
                "gauge",
                "1 when the engine takes publishes (/readyz).",
                u64::from(ready),
            ),
            (
                "wsmio_engine_pending_operations",
                "gauge",
                "Operations queued for Redis and not yet sent.",
                pending,
            ),
            (
                "wsmio_engine_reconnects_total",
                "counter",
                "Reconnects to Redis (either connection).",
                get(&self.reconnects),
            ),
            (
                "wsmio_engine_messages_total",
                "counter",
                "Pub/sub messages received from Redis.",
                get(&self.messages),
            ),
            (
                "wsmio_engine_publishes_total",
                "counter",
                "Publishes sent to Redis.",
                get(&self.publishes),
            ),
            (
                "wsmio_engine_commands_total",
                "counter",
                "Commands sent to Redis.",
                get(&self.commands),
            ),
            (
                "wsmio_engine_fills_total",
                "counter",
                "History fetches that filled a hole in a topic's deliveries.",
                get(&self.fills),
            ),
            (
                "wsmio_engine_lost_total",
                "counter",
                "Deliveries missed and gone from history (reported as gap).",
                get(&self.lost),
            ),
            (
                "wsmio_engine_acks_refused_total",
                "counter",
                "Acks not stored (over the per-user limit, or lost with a connection).",
                get(&self.acks_refused),
            ),
        ];
        for (name, kind, help, v) in samples {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let name = "wsmio_engine_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Engine errors, by kind.\n# TYPE {name} counter"
        );
        for (kind, a) in [
            ("io", &self.errors.io),
            ("server", &self.errors.server),
            ("unavailable", &self.errors.unavailable),
        ] {
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", get(a));
        }
        self.render_latency(out);
    }

    /// The round-trip histogram.
    fn render_latency(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let name = "wsmio_engine_round_trip_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Round trips to Redis (one pipeline each).\n# TYPE {name} histogram"
        );
        let mut cum = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cum += get(&self.latency[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
        }
        cum += get(&self.latency[BUCKETS_US.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", get(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", get(&self.round_trips));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = Stats::default();
        s.round_trip(Duration::from_micros(50), 3);
        s.round_trip(Duration::from_micros(300), 1);
        s.round_trip(Duration::from_secs(5), 1);
        let mut out = String::new();
        s.render(true, &mut out);
        assert!(
            out.contains("wsmio_engine_round_trip_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("wsmio_engine_round_trip_seconds_bucket{le=\"0.0005\"} 2\n"));
        assert!(out.contains("wsmio_engine_round_trip_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("wsmio_engine_round_trip_seconds_count 3\n"));
        assert!(out.contains("wsmio_engine_commands_total 5\n"));
    }
}
