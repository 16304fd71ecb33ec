//! Hub metrics, rendered in the Prometheus text format. Label sets are
//! fixed enums (close codes are bucketed), so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::reactor::{SendStatus, Stats};

/// Counters and gauges of one hub.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections_current: u64,
    /// Connections opened since start.
    pub connections_total: u64,
    /// Messages received from clients.
    pub messages_in: u64,
    /// Bytes of messages received.
    pub bytes_in: u64,
    /// Messages queued to clients (deliveries, acks, events).
    pub messages_out: u64,
    /// Bytes of messages queued to clients.
    pub bytes_out: u64,
    /// Topic deliveries (one per recipient).
    pub fanout_deliveries: u64,
    /// Deliveries sent again for want of an ack (`redeliver_after`).
    pub redeliveries: u64,
    /// Connections whose requests waited for a later loop turn (the
    /// turn's request budget was spent).
    pub requests_deferred: u64,
    /// Fan-outs that did not fit in their loop turn and went on later.
    pub fanout_slices: u64,
    /// Waiting fan-outs finished at once because their topic's subscribers
    /// changed.
    pub fanout_settles: u64,
    /// Connections paused for publishing while the fan-out backlog was
    /// over `max_fanout_backlog`.
    pub publishers_paused: u64,
    /// Fan-outs waiting, and the bytes they owe (gauges, set at render).
    pub fanout_waiting: u64,
    /// See `fanout_waiting`.
    pub fanout_backlog_bytes: u64,
    /// `presence_diff` events sent (one per topic and loop turn, each to
    /// every local subscriber).
    pub presence_diffs: u64,
    /// `presence_count` events sent (topics over `presence_events_max`).
    pub presence_counts: u64,
    /// Publishes accepted.
    pub publishes: u64,
    /// Publishes that were retries of stored ones (same idempotency key):
    /// answered with the original's ack, not stored or delivered again.
    pub duplicates: u64,
    /// `ack` requests received.
    pub acks: u64,
    /// Subscriptions resumed from a stored acknowledged position.
    pub positions_restored: u64,
    /// Users with stored acknowledged positions (on this node).
    pub sessions: u64,
    /// Acknowledged positions stored (on this node).
    pub positions: u64,
    /// Idempotency keys within their window (on this node).
    pub idempotency_keys: u64,
    /// Drops by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Closes by code class.
    pub closes: BTreeMap<u16, u64>,
    /// Largest outbound queue seen when a send reported backpressure
    /// (bytes; 0: no queue reached the backpressure limit).
    pub queue_high_water: u64,
    /// Handshake rejections by reason.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Topics that exist.
    pub topics: u64,
    /// Frame bytes kept in all topics' histories (bounded by
    /// `HubConfig::max_history_bytes`).
    pub history_bytes: u64,
    /// Subscriptions across all topics.
    pub subscriptions: u64,
    /// Topics with subscribers on this node.
    pub local_topics: u64,
    /// Requests and upgrades refused by a quota, by quota.
    pub quota_hits: BTreeMap<&'static str, u64>,
}

impl Metrics {
    /// Count a drop.
    pub fn drop(&mut self, reason: &'static str) {
        self.drop_n(reason, 1);
    }

    /// Count `n` drops for `reason`.
    pub fn drop_n(&mut self, reason: &'static str, n: u64) {
        *self.drops.entry(reason).or_default() += n;
    }

    /// Count a refusal by a quota.
    pub fn quota(&mut self, which: &'static str) {
        *self.quota_hits.entry(which).or_default() += 1;
    }

    /// Count a handshake rejection.
    pub fn reject(&mut self, reason: &'static str) {
        *self.rejections.entry(reason).or_default() += 1;
    }

    /// Count a close; codes outside the registered ones are bucketed
    /// (3000 for 3000–3999, 4000 for 4000–4999, 0 otherwise).
    pub fn close(&mut self, code: u16) {
        let bucket = match code {
            1000..=1015 => code,
            3000..=3999 => 3000,
            4000..=4999 => 4000,
            _ => 0,
        };
        *self.closes.entry(bucket).or_default() += 1;
    }

    /// Count one message of `bytes` frame bytes sent with result `s`; on
    /// backpressure, also note the client's queue length (`queued`, only
    /// asked then) for the high-water mark.
    pub fn sent(&mut self, s: SendStatus, bytes: usize, queued: impl FnOnce() -> Option<usize>) {
        if matches!(s, SendStatus::Sent | SendStatus::Backpressured) {
            self.out(bytes);
        }
        if s == SendStatus::Backpressured {
            self.queued(queued());
        }
    }

    /// Note a client's outbound queue length (after a send reported
    /// backpressure) for the high-water mark.
    pub fn queued(&mut self, bytes: Option<usize>) {
        let q = bytes.unwrap_or(0) as u64;
        self.queue_high_water = self.queue_high_water.max(q);
    }

    /// Count a message queued to a client.
    pub fn out(&mut self, bytes: usize) {
        self.out_n(1, bytes);
    }

    /// Count `n` messages of `bytes` in all sent.
    pub fn out_n(&mut self, n: u64, bytes: usize) {
        self.messages_out += n;
        self.bytes_out += bytes as u64;
    }

    /// The loop's own figures (its memory budget, handshakes, timers).
    pub fn render_reactor(stats: &Stats, out: &mut String) {
        const C: &str = "counter";
        const G: &str = "gauge";
        let samples: [(&str, &str, &str, u64); 12] = [
            ("wsmio_buffered_bytes", G, "Input bytes held in partial messages and request heads (bounded by --max-buffered-bytes).", stats.buffered_bytes as u64),
            ("wsmio_budget_closes_total", C, "Connections closed (1013, or 503 in the handshake) because --max-buffered-bytes was passed.", stats.budget_closes),
            ("wsmio_pending_handshakes", G, "Connections not upgraded yet (bounded by --max-pending-handshakes).", stats.pending_handshakes as u64),
            ("wsmio_handshakes_dropped_total", C, "Handshakes dropped, oldest first, to stay under --max-pending-handshakes.", stats.handshakes_dropped),
            ("wsmio_upgraded_connections", G, "Upgraded connections (bounded by --max-connections).", stats.upgraded_connections as u64),
            ("wsmio_timers", G, "Application timers set on the loop.", stats.timers as u64),
            ("wsmio_deflate_compressions_total", C, "permessage-deflate compressor runs: messages compressed for one connection, shared frames compressed once for many.", stats.compressions),
            ("wsmio_deflate_bytes_before_total", C, "Frame bytes (headers included) taken in by those runs.", stats.compress_bytes_before),
            ("wsmio_deflate_bytes_after_total", C, "Frame bytes (headers included) those runs produced.", stats.compress_bytes_after),
            ("wsmio_deflate_sent_compressed_total", C, "Messages queued compressed (every delivery of a shared frame counts).", stats.sent_compressed),
            ("wsmio_deflate_sent_plain_total", C, "Messages queued uncompressed to connections with permessage-deflate (under --deflate-threshold, or not shrinking).", stats.sent_plain),
            ("wsmio_deflate_sent_shared_total", C, "Deliveries of a frame compressed once and shared.", stats.sent_shared_compressed),
        ];
        for (name, kind, help, v) in samples {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        for (name, kind, help, v) in self.samples() {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let codes: BTreeMap<String, u64> = self
            .closes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let labeled: [Labeled<'_>; 4] = [
            (
                "wsmio_drops_total",
                "Messages dropped, by reason.",
                "reason",
                pairs(&self.drops),
            ),
            (
                "wsmio_closes_total",
                "Connections closed, by close code (3000/4000: class; 0: other).",
                "code",
                codes.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
            ),
            (
                "wsmio_quota_hits_total",
                "Upgrades and requests refused by a per-user or per-address quota, by quota.",
                "quota",
                pairs(&self.quota_hits),
            ),
            (
                "wsmio_handshake_rejections_total",
                "Upgrades refused, by reason.",
                "reason",
                pairs(&self.rejections),
            ),
        ];
        for (name, help, label, items) in labeled {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, v) in items {
                let _ = writeln!(s, "{name}{{{label}=\"{k}\"}} {v}");
            }
        }
        s
    }

    /// Every unlabeled sample: name, kind, help, value.
    fn samples(&self) -> [(&'static str, &'static str, &'static str, u64); 28] {
        const C: &str = "counter";
        const G: &str = "gauge";
        [
            ("wsmio_connections", G, "Open WebSocket connections.", self.connections_current),
            ("wsmio_connections_total", C, "WebSocket connections opened.", self.connections_total),
            ("wsmio_messages_in_total", C, "Messages received from clients.", self.messages_in),
            ("wsmio_bytes_in_total", C, "Message bytes received from clients.", self.bytes_in),
            ("wsmio_messages_out_total", C, "Messages queued to clients.", self.messages_out),
            ("wsmio_bytes_out_total", C, "Frame bytes (headers included) queued to clients.", self.bytes_out),
            ("wsmio_fanout_deliveries_total", C, "Topic deliveries, one per recipient.", self.fanout_deliveries),
            ("wsmio_redeliveries_total", C, "Deliveries sent again for want of an ack (--redeliver-after).", self.redeliveries),
            ("wsmio_requests_deferred_total", C, "Times a connection's requests waited for a later loop turn (the turn's request budget was spent).", self.requests_deferred),
            ("wsmio_fanout_slices_total", C, "Fan-outs that did not fit in their loop turn's budget and went on in later turns.", self.fanout_slices),
            ("wsmio_fanout_settles_total", C, "Waiting fan-outs finished at once because their topic's subscribers changed.", self.fanout_settles),
            ("wsmio_publishers_paused_total", C, "Connections not read for a while for publishing into a fan-out backlog over --max-fanout-backlog.", self.publishers_paused),
            ("wsmio_fanout_waiting", G, "Fan-outs waiting for a later loop turn.", self.fanout_waiting),
            ("wsmio_fanout_backlog_bytes", G, "Bytes the waiting fan-outs owe their subscribers.", self.fanout_backlog_bytes),
            ("wsmio_presence_diffs_total", C, "presence_diff events, one per topic and loop turn.", self.presence_diffs),
            ("wsmio_presence_counts_total", C, "presence_count events (topics over presence_events_max).", self.presence_counts),
            ("wsmio_publishes_total", C, "Publishes accepted.", self.publishes),
            (
                "wsmio_duplicate_publishes_total",
                C,
                "Publishes that retried a stored one (same idempotency key): not stored or delivered again.",
                self.duplicates,
            ),
            ("wsmio_acks_total", C, "Ack requests received.", self.acks),
            (
                "wsmio_positions_restored_total",
                C,
                "Subscriptions resumed from a stored acknowledged position.",
                self.positions_restored,
            ),
            (
                "wsmio_sessions",
                G,
                "Users with stored acknowledged positions (kept on this node; the Redis engine keeps them in Redis).",
                self.sessions,
            ),
            ("wsmio_acked_positions", G, "Acknowledged positions stored (kept on this node).", self.positions),
            (
                "wsmio_idempotency_keys",
                G,
                "Idempotency keys within their window (kept on this node).",
                self.idempotency_keys,
            ),
            (
                "wsmio_outbound_queue_high_water_bytes",
                G,
                "Largest outbound queue seen when a send reported backpressure (0: none reached the limit).",
                self.queue_high_water,
            ),
            ("wsmio_topics", G, "Topics the engine holds on this node.", self.topics),
            ("wsmio_history_bytes", G, "Frame bytes kept in all topics' histories.", self.history_bytes),
            ("wsmio_local_topics", G, "Topics with subscribers on this node.", self.local_topics),
            ("wsmio_subscriptions", G, "Subscriptions across all topics.", self.subscriptions),
        ]
    }
}

/// A labeled counter: name, help, label, samples.
type Labeled<'a> = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'a str, u64)>,
);

/// A labeled counter's samples.
fn pairs(m: &BTreeMap<&'static str, u64>) -> Vec<(&'static str, u64)> {
    m.iter().map(|(k, v)| (*k, *v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics {
            connections_total: 3,
            ..Metrics::default()
        };
        m.drop("slow_consumer");
        m.close(1000);
        m.close(4321);
        let t = m.render();
        assert!(t.contains("wsmio_connections_total 3\n"));
        assert!(t.contains("wsmio_drops_total{reason=\"slow_consumer\"} 1\n"));
        assert!(t.contains("wsmio_closes_total{code=\"4000\"} 1\n"));
    }
}
