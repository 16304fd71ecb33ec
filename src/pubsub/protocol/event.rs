//! What the hub sends: deliveries (`msg`, encoded by hand once per
//! publish: the hot path) and every other server message as one typed
//! [`Event`] with one serializer (see `docs/PROTOCOL.md`).

use serde::Serialize;

use super::ErrorCode;

/// A delivery of a message on a topic, as sent to every subscriber.
pub struct Delivery<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Sequence number within (topic, epoch).
    pub seq: u64,
    /// Epoch of the node that sequenced it.
    pub epoch: &'a str,
    /// Node that sequenced it.
    pub node: &'a str,
    /// Sender's user id.
    pub from: &'a str,
    /// Server timestamp (ms since the Unix epoch).
    pub ts: u64,
    /// Payload (raw JSON).
    pub data: &'a str,
}

impl Delivery<'_> {
    /// Encode once; the same text is framed once for all recipients.
    pub fn encode(&self) -> String {
        let (mut out, tail) = self.parts();
        json(&mut out, &self.seq);
        out.extend_from_slice(br#","epoch":"#);
        json(&mut out, self.epoch);
        out.extend_from_slice(&tail);
        // Only UTF-8 went in: `str`s, ASCII, and serde_json's escapes.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The delivery's text around its `seq` and `epoch`, for an engine
    /// that numbers it elsewhere (the Redis engine's publish script):
    /// `head` ends with `"seq":`, then come the number, `,"epoch":` with
    /// the epoch as a JSON string, and `tail` (which starts with
    /// `,"node":`). `self.seq` and `self.epoch` are not used.
    pub fn parts(&self) -> (Vec<u8>, Vec<u8>) {
        // `data` is already valid JSON (it was parsed as a RawValue). The
        // fields are written by serde_json straight into one buffer: no
        // `Value` per field (this runs once per publish).
        let mut head = Vec::with_capacity(
            96 + self.topic.len()
                + self.epoch.len()
                + self.node.len()
                + self.from.len()
                + self.data.len(),
        );
        head.extend_from_slice(br#"{"type":"msg","topic":"#);
        json(&mut head, self.topic);
        head.extend_from_slice(br#","seq":"#);
        let mut tail = Vec::with_capacity(48 + self.node.len() + self.from.len() + self.data.len());
        tail.extend_from_slice(br#","node":"#);
        json(&mut tail, self.node);
        tail.extend_from_slice(br#","from":"#);
        json(&mut tail, self.from);
        tail.extend_from_slice(br#","ts":"#);
        json(&mut tail, &self.ts);
        tail.extend_from_slice(br#","data":"#);
        tail.extend_from_slice(self.data.as_bytes());
        tail.push(b'}');
        (head, tail)
    }
}

/// Append `v` as JSON (strings quoted and escaped, integers in decimal),
/// written by serde_json straight into `out`.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A server message other than a delivery. Serialized with `type` first;
/// the four acks share `"type":"ack"` and say which request they answer in
/// `op`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    /// First message on a connection.
    Welcome {
        /// The user's id.
        user: &'a str,
        /// An anonymous (generated) user.
        anonymous: bool,
        /// This node's name.
        node: &'a str,
        /// The engine's epoch (see `Engine::epoch`).
        epoch: &'a str,
        /// The user's inbox topic.
        inbox: &'a str,
        /// The engine: `memory` or `redis`.
        engine: &'a str,
        /// Topics with at most this many members send `presence_diff`,
        /// bigger ones `presence_count`. A `presence_count` at or below it
        /// follows a turn with too many changes to list: the client's
        /// member list is out of date and cheap to read again.
        presence_events_max: usize,
    },
    /// A `sub` succeeded.
    #[serde(rename = "ack")]
    SubAck {
        /// Request id.
        id: Option<u64>,
        /// Always `sub`.
        op: &'static str,
        /// Topic.
        topic: &'a str,
        /// The topic's epoch.
        epoch: &'a str,
        /// The topic's last seq when subscribed.
        seq: u64,
        /// The request had `since`.
        resumed: bool,
        /// Every missed delivery is replayed.
        recovered: bool,
        /// Missed deliveries no longer in history.
        lost: u64,
        /// `since` named another epoch (or a seq beyond the topic's).
        epoch_changed: bool,
        /// Deliveries replayed after this ack.
        replayed: u64,
        /// With `"since":"acked"`: the user's stored position it resumed
        /// from, or `null` when none was stored (a fresh subscription).
        #[serde(skip_serializing_if = "Acked::is_absent")]
        acked: Acked<'a>,
    },
    /// An `unsub` succeeded.
    #[serde(rename = "ack")]
    UnsubAck {
        /// Request id.
        id: Option<u64>,
        /// Always `unsub`.
        op: &'static str,
        /// Topic.
        topic: &'a str,
    },
    /// A `pub` was stored and numbered.
    #[serde(rename = "ack")]
    PubAck {
        /// Request id.
        id: Option<u64>,
        /// Always `pub`.
        op: &'static str,
        /// Topic.
        topic: &'a str,
        /// Its seq.
        seq: u64,
        /// Its epoch.
        epoch: &'a str,
        /// A retry (same idempotency key): stored before, not again.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A `dm` was stored and numbered in the recipient's inbox.
    #[serde(rename = "ack")]
    DmAck {
        /// Request id.
        id: Option<u64>,
        /// Always `dm`.
        op: &'static str,
        /// Recipient.
        to: &'a str,
        /// The recipient's inbox topic.
        topic: &'a str,
        /// Its seq.
        seq: u64,
        /// Its epoch.
        epoch: &'a str,
        /// A retry (same idempotency key): stored before, not again.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// An `ack` with an id was stored.
    #[serde(rename = "ack")]
    AckAck {
        /// Request id.
        id: Option<u64>,
        /// Always `ack`.
        op: &'static str,
        /// Topic.
        topic: &'a str,
        /// The position stored.
        seq: u64,
    },
    /// A request failed.
    Error {
        /// Request id, if it had a readable one.
        id: Option<u64>,
        /// The code's wire name.
        code: &'static str,
        /// What went wrong (at most 160 bytes of parser text).
        message: &'a str,
        /// With `unavailable`: the request may have taken effect (it
        /// reached the engine before the engine was cut off).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        maybe_stored: bool,
    },
    /// Who joined (first connection anywhere) and left (last one) a
    /// topic since the last such event, while it has at most the hub's
    /// `presence_events_max` members.
    PresenceDiff {
        /// Topic.
        topic: &'a str,
        /// Users that joined, in order.
        joins: &'a [String],
        /// Users that left, in order.
        leaves: &'a [String],
        /// Distinct members after these changes.
        count: u64,
        /// Wall-clock ms.
        ts: u64,
    },
    /// A topic's member count, in place of `presence_diff` while it has
    /// more than `presence_events_max` members: at most one per topic per
    /// second, when the count changed.
    PresenceCount {
        /// Topic.
        topic: &'a str,
        /// Distinct members.
        count: u64,
        /// Wall-clock ms.
        ts: u64,
    },
    /// Deliveries `from..=to` are lost for this client.
    Gap {
        /// Topic.
        topic: &'a str,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
        /// Their epoch.
        epoch: &'a str,
    },
    /// The answer to `presence`: one page of members.
    Presence {
        /// Request id.
        id: Option<u64>,
        /// Topic.
        topic: &'a str,
        /// Distinct users on this page.
        members: &'a [String],
        /// Distinct users in all.
        count: u64,
        /// Send it back as `cursor` for the next page (`null`: this was
        /// the last).
        cursor: Option<&'a str>,
    },
    /// The topic's numbering started over (the engine lost its data):
    /// positions in the old epoch mean nothing now; deliveries go on in
    /// `epoch` after `seq`.
    Reset {
        /// Topic.
        topic: &'a str,
        /// The new epoch.
        epoch: &'a str,
        /// Its last seq.
        seq: u64,
    },
}

/// The `acked` field of a `sub` ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acked<'a> {
    /// Not asked for (no `"since":"acked"`): the field is left out.
    #[default]
    Absent,
    /// Asked for, nothing stored: `null`.
    None,
    /// The stored position: `{"epoch":…,"seq":…}`.
    At {
        /// Its epoch.
        epoch: &'a str,
        /// Its seq.
        seq: u64,
    },
}

impl Acked<'_> {
    fn is_absent(&self) -> bool {
        *self == Acked::Absent
    }
}

impl Serialize for Acked<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            Acked::Absent | Acked::None => s.serialize_none(),
            Acked::At { epoch, seq } => {
                let mut st = s.serialize_struct("Acked", 2)?;
                st.serialize_field("epoch", epoch)?;
                st.serialize_field("seq", seq)?;
                st.end()
            }
        }
    }
}

impl Event<'_> {
    /// The JSON text.
    pub fn encode(&self) -> String {
        // Serializing these types cannot fail (no maps with non-string
        // keys, no failing Serialize impls).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An error reply.
    pub fn error(id: Option<u64>, code: ErrorCode, message: &str) -> Event<'_> {
        Event::Error {
            id,
            code: code.as_str(),
            message,
            maybe_stored: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn delivery_is_valid_json() {
        let d = Delivery {
            topic: "r\"1",
            seq: 5,
            epoch: "e",
            node: "n",
            from: "al\u{e9}",
            ts: 9,
            data: "[1]",
        };
        let v: Value = serde_json::from_str(&d.encode()).unwrap();
        assert_eq!(v["topic"], "r\"1");
        assert_eq!(v["data"][0], 1);
    }

    #[test]
    fn parts_around_seq_and_epoch_make_the_delivery() {
        let d = Delivery {
            topic: "t",
            seq: 17,
            epoch: "ab12",
            node: "n",
            from: "u",
            ts: 3,
            data: "null",
        };
        let (head, tail) = d.parts();
        let glued = format!(
            "{}17,\"epoch\":\"ab12\"{}",
            String::from_utf8(head).unwrap(),
            String::from_utf8(tail).unwrap()
        );
        assert_eq!(glued, d.encode());
    }

    #[test]
    fn events_are_typed_json_with_type_first() {
        let e = Event::SubAck {
            id: Some(1),
            op: "sub",
            topic: "t",
            epoch: "e",
            seq: 4,
            resumed: true,
            recovered: false,
            lost: 2,
            epoch_changed: false,
            replayed: 1,
            acked: Acked::Absent,
        }
        .encode();
        assert!(
            e.starts_with(r#"{"type":"ack","id":1,"op":"sub","topic":"t""#),
            "{e}"
        );
        let v: Value =
            serde_json::from_str(&Event::error(None, ErrorCode::Forbidden, "no").encode()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","id":null,"code":"forbidden","message":"no"})
        );
        let u = Event::Error {
            id: Some(2),
            code: "unavailable",
            message: "x",
            maybe_stored: true,
        }
        .encode();
        assert!(u.ends_with(r#""maybe_stored":true}"#), "{u}");
        let m = [String::from("a")];
        let p = Event::Presence {
            id: None,
            topic: "t",
            members: &m,
            count: 3,
            cursor: Some("a"),
        }
        .encode();
        assert_eq!(
            p,
            r#"{"type":"presence","id":null,"topic":"t","members":["a"],"count":3,"cursor":"a"}"#
        );
        let d = Event::PresenceDiff {
            topic: "t",
            joins: &m,
            leaves: &[],
            count: 1,
            ts: 5,
        }
        .encode();
        assert_eq!(
            d,
            r#"{"type":"presence_diff","topic":"t","joins":["a"],"leaves":[],"count":1,"ts":5}"#
        );
        let c = Event::PresenceCount {
            topic: "t",
            count: 900,
            ts: 5,
        }
        .encode();
        assert_eq!(
            c,
            r#"{"type":"presence_count","topic":"t","count":900,"ts":5}"#
        );
    }

    /// The hand-assembled encoding is byte for byte what formatting each
    /// field as a serde_json `Value` gives (the simple reference).
    #[test]
    fn delivery_encoding_matches_value_formatting() {
        for (topic, from, seq, ts) in [
            ("room.1", "alice", 0, 0),
            (
                "t\"q\\",
                "\u{1}\n\t\u{7f}\u{e9}\u{1f600}",
                u64::MAX,
                1_763_900_000_000,
            ),
            ("", "b", 10, 99),
        ] {
            let d = Delivery {
                topic,
                seq,
                epoch: "9f3c1a2b4d5e",
                node: "local",
                from,
                ts,
                data: r#"{"text":"hi"}"#,
            };
            let reference = format!(
                r#"{{"type":"msg","topic":{},"seq":{},"epoch":{},"node":{},"from":{},"ts":{},"data":{}}}"#,
                Value::from(topic),
                seq,
                Value::from(d.epoch),
                Value::from(d.node),
                Value::from(from),
                ts,
                d.data
            );
            assert_eq!(d.encode(), reference);
        }
    }
}
