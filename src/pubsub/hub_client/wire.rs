//! The hub protocol as the client speaks it (`docs/PROTOCOL.md`): the
//! requests it sends (one typed enum, one serializer) and the server
//! messages it reads, checked into typed values — a malformed message is
//! an error value, never a panic.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::Position;
use super::events::{Message, Subscribed, Welcome};

/// `since` in a `sub` request.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum SinceWire<'a> {
    /// `{"epoch":…,"seq":…}`
    At { epoch: &'a str, seq: u64 },
    /// `"acked"`
    Word(&'static str),
}

/// A request to the hub.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Request<'a> {
    Sub {
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<SinceWire<'a>>,
        id: u64,
    },
    Unsub {
        topic: &'a str,
        id: u64,
    },
    Pub {
        topic: &'a str,
        data: &'a RawValue,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        exclude_self: bool,
        idempotency_key: &'a str,
        id: u64,
    },
    Dm {
        to: &'a str,
        data: &'a RawValue,
        idempotency_key: &'a str,
        id: u64,
    },
    Ack {
        topic: &'a str,
        seq: u64,
        epoch: &'a str,
    },
    Presence {
        topic: &'a str,
        limit: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cursor: Option<&'a str>,
        id: u64,
    },
}

impl Request<'_> {
    /// The JSON text.
    pub fn encode(&self) -> String {
        // These types always serialize (string keys, infallible impls).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A server message, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Inbound {
    Welcome(Welcome),
    Msg(Message),
    SubAck {
        id: Option<u64>,
        ack: Subscribed,
    },
    /// The ack of a `pub` or `dm`.
    PubAck {
        id: Option<u64>,
        topic: String,
        seq: u64,
        epoch: String,
        duplicate: bool,
    },
    /// The ack of an `unsub` or an `ack` (nothing to learn from it).
    OtherAck {
        id: Option<u64>,
    },
    Presence {
        id: Option<u64>,
        topic: String,
        members: Vec<String>,
        count: u64,
        cursor: Option<String>,
    },
    PresenceDiff {
        topic: String,
        joins: Vec<String>,
        leaves: Vec<String>,
        count: u64,
    },
    PresenceCount {
        topic: String,
        count: u64,
    },
    Gap {
        topic: String,
        epoch: String,
        from: u64,
        to: u64,
    },
    Reset {
        topic: String,
        epoch: String,
        seq: u64,
    },
    Error {
        id: Option<u64>,
        code: String,
        message: String,
        maybe_stored: bool,
    },
    /// A type this client does not know (a newer hub): ignored.
    Unknown,
}

/// Every field any server message has, all optional: one pass of
/// serde_json, then each type takes what it needs. (A serde-tagged enum
/// would buffer the message and could not take `data` raw.)
#[derive(Deserialize)]
struct Wire<'a> {
    // Borrowed from the text (a type name has no escapes): cloned for the
    // error messages below at no cost.
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    id: Option<u64>,
    op: Option<String>,
    topic: Option<String>,
    seq: Option<u64>,
    epoch: Option<String>,
    node: Option<String>,
    // A user id in `msg`, a seq in `gap`.
    #[serde(borrow)]
    from: Option<&'a RawValue>,
    // A user id in a `dm` ack, a seq in `gap`.
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    ts: Option<u64>,
    // `null` is a payload too: absent is `None`, `null` is `Some("null")`.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    user: Option<String>,
    anonymous: Option<bool>,
    inbox: Option<String>,
    engine: Option<String>,
    presence_events_max: Option<u64>,
    #[serde(default)]
    resumed: bool,
    #[serde(default)]
    recovered: bool,
    #[serde(default)]
    lost: u64,
    #[serde(default)]
    epoch_changed: bool,
    #[serde(default)]
    replayed: u64,
    acked: Option<PositionWire>,
    #[serde(default)]
    duplicate: bool,
    members: Option<Vec<String>>,
    joins: Option<Vec<String>>,
    leaves: Option<Vec<String>>,
    count: Option<u64>,
    cursor: Option<String>,
    code: Option<String>,
    message: Option<String>,
    #[serde(default)]
    maybe_stored: bool,
}

/// `{"epoch":…,"seq":…}`
#[derive(Deserialize)]
struct PositionWire {
    epoch: String,
    seq: u64,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Longest piece of a bad message quoted in the error.
const QUOTE: usize = 80;

/// Read one server message. `Err` says what is wrong with it.
pub(super) fn parse(text: &str) -> Result<Inbound, String> {
    let w: Wire<'_> = serde_json::from_str(text)
        .map_err(|e| format!("unreadable hub message ({e}): {}", quote(text)))?;
    let kind = w.kind.clone();
    let need = |what: &str| format!("'{kind}' without '{what}': {}", quote(text));
    match &*kind {
        "welcome" => welcome(w).ok_or_else(|| need("user")),
        "msg" => msg(w).ok_or_else(|| need("topic, seq, epoch, from or data")),
        "ack" => Ok(ack(w).ok_or_else(|| need("topic, seq or epoch"))?),
        "presence" => presence(w).ok_or_else(|| need("topic, members or count")),
        "presence_diff" => diff(w).ok_or_else(|| need("topic, joins, leaves or count")),
        "presence_count" => Ok(Inbound::PresenceCount {
            topic: w.topic.ok_or_else(|| need("topic"))?,
            count: w.count.ok_or_else(|| need("count"))?,
        }),
        "gap" => gap(w).ok_or_else(|| need("topic, epoch, from or to")),
        "reset" => Ok(Inbound::Reset {
            topic: w.topic.ok_or_else(|| need("topic"))?,
            epoch: w.epoch.ok_or_else(|| need("epoch"))?,
            seq: w.seq.ok_or_else(|| need("seq"))?,
        }),
        "error" => Ok(Inbound::Error {
            id: w.id,
            code: w.code.ok_or_else(|| need("code"))?,
            message: w.message.unwrap_or_default(),
            maybe_stored: w.maybe_stored,
        }),
        _ => Ok(Inbound::Unknown),
    }
}

fn welcome(w: Wire<'_>) -> Option<Inbound> {
    let user = w.user?;
    Some(Inbound::Welcome(Welcome {
        inbox: w.inbox.unwrap_or_else(|| format!("@{user}")),
        user,
        anonymous: w.anonymous.unwrap_or(false),
        node: w.node.unwrap_or_default(),
        epoch: w.epoch.unwrap_or_default(),
        engine: w.engine.unwrap_or_default(),
        presence_events_max: w.presence_events_max,
    }))
}

fn msg(w: Wire<'_>) -> Option<Inbound> {
    let from: String = serde_json::from_str(w.from?.get()).ok()?;
    Some(Inbound::Msg(Message {
        topic: w.topic?,
        seq: w.seq?,
        epoch: w.epoch?,
        from,
        node: w.node.unwrap_or_default(),
        ts: w.ts.unwrap_or(0),
        data: w.data?.get().to_owned(),
    }))
}

fn ack(w: Wire<'_>) -> Option<Inbound> {
    Some(match w.op.as_deref() {
        Some("sub") => Inbound::SubAck {
            id: w.id,
            ack: Subscribed {
                topic: w.topic?,
                epoch: w.epoch?,
                seq: w.seq?,
                resumed: w.resumed,
                recovered: w.recovered,
                lost: w.lost,
                epoch_changed: w.epoch_changed,
                replayed: w.replayed,
                acked: w.acked.map(|p| Position::new(p.epoch, p.seq)),
            },
        },
        Some("pub") | Some("dm") => Inbound::PubAck {
            id: w.id,
            topic: w.topic?,
            seq: w.seq?,
            epoch: w.epoch?,
            duplicate: w.duplicate,
        },
        _ => Inbound::OtherAck { id: w.id },
    })
}

fn presence(w: Wire<'_>) -> Option<Inbound> {
    Some(Inbound::Presence {
        id: w.id,
        topic: w.topic?,
        members: w.members?,
        count: w.count?,
        cursor: w.cursor,
    })
}

fn diff(w: Wire<'_>) -> Option<Inbound> {
    Some(Inbound::PresenceDiff {
        topic: w.topic?,
        joins: w.joins?,
        leaves: w.leaves?,
        count: w.count?,
    })
}

fn gap(w: Wire<'_>) -> Option<Inbound> {
    let from: u64 = serde_json::from_str(w.from?.get()).ok()?;
    let to: u64 = serde_json::from_str(w.to?.get()).ok()?;
    Some(Inbound::Gap {
        topic: w.topic?,
        epoch: w.epoch?,
        from,
        to,
    })
}

/// The start of `text`, for an error message.
fn quote(text: &str) -> &str {
    let mut end = text.len().min(QUOTE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_as_the_protocol_says() {
        let data = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let cases = [
            (
                Request::Sub {
                    topic: "t",
                    since: Some(SinceWire::At { epoch: "e", seq: 3 }),
                    id: 1,
                },
                r#"{"op":"sub","topic":"t","since":{"epoch":"e","seq":3},"id":1}"#,
            ),
            (
                Request::Sub {
                    topic: "t",
                    since: Some(SinceWire::Word("acked")),
                    id: 2,
                },
                r#"{"op":"sub","topic":"t","since":"acked","id":2}"#,
            ),
            (
                Request::Pub {
                    topic: "t",
                    data: &data,
                    exclude_self: true,
                    idempotency_key: "k",
                    id: 3,
                },
                r#"{"op":"pub","topic":"t","data":{"text":"hi"},"exclude_self":true,"idempotency_key":"k","id":3}"#,
            ),
            (
                Request::Dm {
                    to: "bob",
                    data: &data,
                    idempotency_key: "k",
                    id: 4,
                },
                r#"{"op":"dm","to":"bob","data":{"text":"hi"},"idempotency_key":"k","id":4}"#,
            ),
            (
                Request::Ack {
                    topic: "t",
                    seq: 9,
                    epoch: "e",
                },
                r#"{"op":"ack","topic":"t","seq":9,"epoch":"e"}"#,
            ),
            (
                Request::Presence {
                    topic: "t",
                    limit: 256,
                    cursor: Some("bob"),
                    id: 5,
                },
                r#"{"op":"presence","topic":"t","limit":256,"cursor":"bob","id":5}"#,
            ),
        ];
        for (req, want) in cases {
            assert_eq!(req.encode(), want);
            // And the hub's own parser takes it.
            crate::pubsub::protocol::Request::parse(want).unwrap();
        }
    }

    #[test]
    fn server_messages_parse() {
        let m = parse(r#"{"type":"msg","topic":"t","seq":4,"epoch":"e","node":"n","from":"al","ts":7,"data":null}"#).unwrap();
        let Inbound::Msg(m) = m else { panic!("{m:?}") };
        assert_eq!((m.seq, m.from.as_str(), m.data.as_str()), (4, "al", "null"));
        let g = parse(r#"{"type":"gap","topic":"t","from":50,"to":61,"epoch":"e"}"#).unwrap();
        assert!(
            matches!(
                g,
                Inbound::Gap {
                    from: 50,
                    to: 61,
                    ..
                }
            ),
            "{g:?}"
        );
        let a = parse(r#"{"type":"ack","id":1,"op":"sub","topic":"t","epoch":"e","seq":41,"resumed":true,"recovered":true,"lost":0,"epoch_changed":false,"replayed":3,"acked":{"epoch":"e","seq":38}}"#).unwrap();
        let Inbound::SubAck { id: Some(1), ack } = a else {
            panic!("{a:?}")
        };
        assert_eq!((ack.replayed, ack.acked), (3, Some(Position::new("e", 38))));
        let a = parse(
            r#"{"type":"ack","id":null,"op":"sub","topic":"t","epoch":"e","seq":0,"acked":null}"#,
        )
        .unwrap();
        assert!(matches!(
            a,
            Inbound::SubAck {
                id: None,
                ack: Subscribed { acked: None, .. }
            }
        ));
        let p = parse(r#"{"type":"ack","id":5,"op":"dm","to":"bob","topic":"@bob","seq":7,"epoch":"e","duplicate":true}"#).unwrap();
        assert!(
            matches!(
                p,
                Inbound::PubAck {
                    duplicate: true,
                    seq: 7,
                    ..
                }
            ),
            "{p:?}"
        );
        let e = parse(
            r#"{"type":"error","id":7,"code":"unavailable","message":"x","maybe_stored":true}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            Inbound::Error {
                maybe_stored: true,
                id: Some(7),
                ..
            }
        ));
        assert_eq!(parse(r#"{"type":"future","x":1}"#), Ok(Inbound::Unknown));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let long = format!(r#"{{"type":"msg","topic":"{}"}}"#, "é".repeat(200));
        for bad in [
            "",
            "not json",
            "[1,2]",
            r#"{"no":"type"}"#,
            r#"{"type":"msg","topic":"t","seq":-1,"epoch":"e","from":"a","data":1}"#,
            r#"{"type":"msg","topic":"t","seq":1,"epoch":"e","from":7,"data":1}"#,
            r#"{"type":"msg","topic":"t","seq":1,"epoch":"e","from":"a"}"#,
            r#"{"type":"gap","topic":"t","from":"a","to":2,"epoch":"e"}"#,
            r#"{"type":"ack","op":"sub","topic":"t"}"#,
            r#"{"type":"presence","topic":"t","members":[1],"count":1}"#,
            r#"{"type":"error","id":"x","code":"c"}"#,
            long.as_str(),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.len() < 400, "{e}");
        }
    }
}
