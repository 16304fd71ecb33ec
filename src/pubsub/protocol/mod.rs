//! The hub's wire protocol: JSON text frames (see `docs/PROTOCOL.md`).
//! This file: what clients send (requests) and the names and limits both
//! directions share; `event.rs`: what the hub sends.

mod event;

pub use event::{Acked, Delivery, Event};

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Where a resuming client left off.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Since {
    /// The epoch of the last delivery the client saw.
    pub epoch: String,
    /// Its sequence number.
    pub seq: u64,
}

/// What a `sub` resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// After a position the client kept (`"since":{"epoch":…,"seq":…}`).
    From(Since),
    /// After the position this user last acknowledged, on any connection
    /// (`"since":"acked"`).
    Acked,
}

/// `since` on the wire: a position, or a word.
#[derive(Deserialize)]
#[serde(untagged)]
enum SinceWire {
    At(Since),
    Word(String),
}

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// A client request.
#[derive(Debug)]
pub enum Request<'a> {
    /// Subscribe to a topic, optionally resuming after `since`.
    Sub {
        /// Request id, echoed in the ack or error.
        id: Option<u64>,
        /// Topic name.
        topic: Cow<'a, str>,
        /// Resume point.
        since: Option<Resume>,
    },
    /// Unsubscribe.
    Unsub {
        /// Request id.
        id: Option<u64>,
        /// Topic name.
        topic: Cow<'a, str>,
    },
    /// Publish `data` (any JSON value) on a topic.
    Pub {
        /// Request id; the ack carries the sequence number.
        id: Option<u64>,
        /// Topic name.
        topic: Cow<'a, str>,
        /// Payload, passed through as raw JSON.
        data: &'a RawValue,
        /// Do not deliver to the publishing connection.
        exclude_self: bool,
        /// A retry with the same key within the engine's window is not
        /// stored again: the original ack comes back.
        idempotency_key: Option<String>,
    },
    /// A direct message to every connection of user `to` (through the
    /// user's inbox topic, so it has history).
    Dm {
        /// Request id.
        id: Option<u64>,
        /// Recipient user id.
        to: Cow<'a, str>,
        /// Payload.
        data: &'a RawValue,
        /// As for `Pub`.
        idempotency_key: Option<String>,
    },
    /// The client processed `topic` up to `seq` (cumulative).
    Ack {
        /// Request id; only a request with one gets an answer.
        id: Option<u64>,
        /// Topic name.
        topic: Cow<'a, str>,
        /// The last seq processed.
        seq: u64,
        /// The epoch of `seq`, if the client says (checked against the
        /// topic's).
        epoch: Option<String>,
    },
    /// One page of a topic's members, and their count.
    Presence {
        /// Request id.
        id: Option<u64>,
        /// Topic name.
        topic: Cow<'a, str>,
        /// Most members on the page (the hub's default if absent; capped
        /// at [`PRESENCE_PAGE_MAX`]).
        limit: Option<u64>,
        /// Where to go on: the `cursor` of the previous page's answer.
        cursor: Option<String>,
    },
}

/// The flat shape every request shares on the wire. (A serde-tagged enum
/// would buffer the payload and could not pass `data` through raw.)
#[derive(Deserialize)]
struct Wire<'a> {
    // Borrowed from the message unless it holds escapes.
    #[serde(borrow)]
    op: Cow<'a, str>,
    id: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    topic: Option<Cow<'a, str>>,
    since: Option<SinceWire>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    to: Option<Cow<'a, str>>,
    seq: Option<u64>,
    epoch: Option<String>,
    idempotency_key: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
    // `null` is a payload too: absent is `None`, `null` is `Some("null")`.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default)]
    exclude_self: bool,
}

/// An optional string borrowed from the text when it has no escapes
/// (serde borrows a `Cow` field only when it is not inside an `Option`).
fn borrowed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Text<'de>>::deserialize(d).map(|o| o.map(|Text(c)| c))
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Just the id of a request that failed to parse, to echo it in the error.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<u64>,
}

/// The `id` of a request, if it is a JSON object with a numeric `id`
/// (for errors about requests that are not otherwise looked at).
pub fn request_id(text: &str) -> Option<u64> {
    serde_json::from_str::<IdOnly>(text).ok().and_then(|r| r.id)
}

/// A request that could not be understood, with the request id if one was
/// readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The request's id, if it had one.
    pub id: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl<'a> Request<'a> {
    /// The request's id.
    pub fn id(&self) -> Option<u64> {
        match self {
            Request::Sub { id, .. }
            | Request::Unsub { id, .. }
            | Request::Pub { id, .. }
            | Request::Dm { id, .. }
            | Request::Ack { id, .. }
            | Request::Presence { id, .. } => *id,
        }
    }

    /// Parse one request.
    // Over 80 lines on purpose: one match over every op, so each request's
    // fields and checks read in one place.
    pub fn parse(text: &'a str) -> Result<Request<'a>, BadRequest> {
        let w: Wire<'a> = serde_json::from_str(text).map_err(|e| BadRequest {
            // E.g. no `op`, or a field of the wrong type: the id may still
            // be readable.
            id: request_id(text),
            message: truncated(format!("invalid request: {e}")),
        })?;
        let id = w.id;
        let op = w.op;
        let missing = |field: &str| BadRequest {
            id,
            message: truncated(format!("'{op}' needs '{field}'")),
        };
        if let Some(d) = w.data {
            if json_depth_exceeds(d.get(), MAX_DATA_DEPTH) {
                return Err(BadRequest {
                    id,
                    message: format!("'data' is nested deeper than {MAX_DATA_DEPTH} levels"),
                });
            }
        }
        let bad = |message: &str| BadRequest {
            id,
            message: message.to_string(),
        };
        let since = match w.since {
            None => None,
            Some(SinceWire::At(s)) => Some(Resume::From(s)),
            Some(SinceWire::Word(w)) if w == "acked" => Some(Resume::Acked),
            Some(SinceWire::Word(_)) => {
                return Err(bad(r#"'since' is {"epoch":…,"seq":…} or "acked""#));
            }
        };
        let key = match w.idempotency_key {
            Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => {
                return Err(bad("'idempotency_key' must be 1 to 128 bytes"));
            }
            k => k,
        };
        Ok(match &*op {
            "sub" => Request::Sub {
                id,
                topic: w.topic.ok_or_else(|| missing("topic"))?,
                since,
            },
            "unsub" => Request::Unsub {
                id,
                topic: w.topic.ok_or_else(|| missing("topic"))?,
            },
            "pub" => Request::Pub {
                id,
                topic: w.topic.ok_or_else(|| missing("topic"))?,
                data: w.data.ok_or_else(|| missing("data"))?,
                exclude_self: w.exclude_self,
                idempotency_key: key,
            },
            "dm" => Request::Dm {
                id,
                to: w.to.ok_or_else(|| missing("to"))?,
                data: w.data.ok_or_else(|| missing("data"))?,
                idempotency_key: key,
            },
            "ack" => Request::Ack {
                id,
                topic: w.topic.ok_or_else(|| missing("topic"))?,
                seq: w.seq.ok_or_else(|| missing("seq"))?,
                epoch: w.epoch,
            },
            "presence" => Request::Presence {
                id,
                topic: w.topic.ok_or_else(|| missing("topic"))?,
                limit: w.limit,
                cursor: w.cursor,
            },
            other => {
                return Err(BadRequest {
                    id,
                    message: truncated(format!("unknown op '{other}'")),
                })
            }
        })
    }
}

/// Longest error message text: parser messages quote the offending
/// value, which must not come back at its own size.
const MAX_ERROR_MESSAGE: usize = 160;

fn truncated(mut m: String) -> String {
    if m.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push('…');
    }
    m
}

/// Error codes of `{"type":"error"}` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, or not a known request.
    BadRequest,
    /// The token's patterns do not allow this topic.
    Forbidden,
    /// Too many subscriptions on this connection.
    TooManyTopics,
    /// Rate limit exceeded; the request was dropped.
    RateLimited,
    /// Not subscribed to this topic.
    NotSubscribed,
    /// The topic name is empty, too long, or malformed.
    BadTopic,
    /// An `ack` for a seq the topic has not reached, or of another epoch.
    BadAck,
    /// The engine cannot be reached (Redis down): retry later. With
    /// `maybe_stored`, a publish may still have been stored.
    Unavailable,
}

impl ErrorCode {
    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::BadAck => "bad_ack",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 128;

/// Members on a `presence` page when the request does not say.
pub const PRESENCE_PAGE_DEFAULT: usize = 100;

/// Most members on one `presence` page. A user id is shorter than
/// [`MAX_TOPIC_LEN`], so a page stays under 256 × 2 × 128 bytes (64 KiB)
/// even with every character escaped.
pub const PRESENCE_PAGE_MAX: usize = 256;

/// A topic name is 1–128 bytes of visible characters: no spaces of any
/// kind, no control characters, and no invisible format characters (zero
/// widths, bidi controls) that would let two names look the same. Names
/// that start with `@` are user inboxes.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TOPIC_LEN && t.chars().all(visible)
}

/// A character that shows: ASCII graphic, or non-ASCII that is neither
/// whitespace, control, nor an invisible format character.
fn visible(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_graphic();
    }
    !(c.is_whitespace() || c.is_control() || invisible_format(c))
}

/// Unicode format characters (category Cf) that render as nothing:
/// soft hyphen, zero widths and joiners, bidi marks, embeddings and
/// isolates, word joiner and invisible operators, the BOM, tag characters.
fn invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
        | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Deepest nesting of arrays and objects allowed in a payload (`data`).
/// Many JSON parsers (serde_json's default limit is 128) refuse deeper
/// documents, so relaying one would break its subscribers.
pub const MAX_DATA_DEPTH: usize = 64;

/// Whether a valid JSON text nests deeper than `max`. Each level takes an
/// opening and a closing bracket, so a text shorter than `2 * (max + 1)`
/// cannot; the depth cannot exceed the number of `[` and `{` bytes either,
/// and counting those is a vectorized pass. The exact scan runs only for
/// texts with more of them.
pub fn json_depth_exceeds(json: &str, max: usize) -> bool {
    if json.len() < 2 * (max + 1) {
        return false;
    }
    let mut opens = 0usize;
    for chunk in json.as_bytes().chunks(255) {
        // `[` is 0x5B and `{` 0x7B: one compare after setting bit 5. Byte
        // lanes, so the loop vectorizes; 255 per chunk cannot overflow.
        let n = chunk
            .iter()
            .fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{'));
        opens += usize::from(n);
    }
    opens > max && json_depth(json) > max
}

/// The nesting depth of a JSON text already known to be valid: the most
/// `[`/`{` open at once, outside strings.
pub fn json_depth(json: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in json.as_bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_requests() {
        let r = Request::parse(r#"{"op":"pub","topic":"t","data":{"a":[1,2]},"id":7}"#).unwrap();
        match r {
            Request::Pub {
                id,
                topic,
                data,
                exclude_self,
                ..
            } => {
                assert_eq!(
                    (id, &*topic, data.get(), exclude_self),
                    (Some(7), "t", r#"{"a":[1,2]}"#, false)
                );
                // Borrowed from the text: no copy per request.
                assert!(matches!(topic, Cow::Borrowed(_)));
            }
            _ => panic!(),
        }
        // With an escape it is decoded into a copy.
        let r = Request::parse(r#"{"op":"unsub","topic":"a\u0062"}"#).unwrap();
        assert!(matches!(r, Request::Unsub { topic, .. } if topic == "ab"));
        let r =
            Request::parse(r#"{"op":"sub","topic":"t","since":{"epoch":"e","seq":3}}"#).unwrap();
        assert!(matches!(
            r,
            Request::Sub {
                since: Some(Resume::From(Since { seq: 3, .. })),
                ..
            }
        ));
        let r = Request::parse(r#"{"op":"sub","topic":"t","since":"acked"}"#).unwrap();
        assert!(matches!(
            r,
            Request::Sub {
                since: Some(Resume::Acked),
                ..
            }
        ));
        let e = Request::parse(r#"{"op":"sub","topic":"t","since":"latest","id":8}"#).unwrap_err();
        assert_eq!(e.id, Some(8));
        assert!(Request::parse(r#"{"op":"sub","topic":"t","since":{"seq":1}}"#).is_err());
        match Request::parse(r#"{"op":"ack","topic":"t","seq":57}"#).unwrap() {
            Request::Ack {
                topic,
                seq,
                epoch,
                id,
            } => {
                assert_eq!((&*topic, seq, epoch, id), ("t", 57, None, None))
            }
            other => panic!("{other:?}"),
        }
        assert!(Request::parse(r#"{"op":"ack","topic":"t"}"#).is_err());
        assert!(Request::parse(r#"{"op":"ack","topic":"t","seq":-1}"#).is_err());
        match Request::parse(r#"{"op":"pub","topic":"t","data":1,"idempotency_key":"k-1"}"#)
            .unwrap()
        {
            Request::Pub {
                idempotency_key, ..
            } => assert_eq!(idempotency_key.as_deref(), Some("k-1")),
            other => panic!("{other:?}"),
        }
        let long = format!(
            r#"{{"op":"dm","to":"u","data":1,"idempotency_key":"{}"}}"#,
            "k".repeat(129)
        );
        assert!(Request::parse(&long).is_err());
        assert!(
            Request::parse(r#"{"op":"pub","topic":"t","data":1,"idempotency_key":""}"#).is_err()
        );
        assert_eq!(
            Request::parse(r#"{"op":"nope","id":4}"#).unwrap_err().id,
            Some(4)
        );
        assert!(Request::parse(r#"{"op":"pub","topic":"t"}"#).is_err());
        assert!(Request::parse("not json").is_err());
        assert_eq!(
            Request::parse(r#"{"topic":"t","id":5}"#).unwrap_err().id,
            Some(5)
        );
        assert_eq!(
            Request::parse(r#"{"op":"sub","topic":1,"id":6}"#)
                .unwrap_err()
                .id,
            Some(6)
        );
        match Request::parse(r#"{"op":"dm","to":"u","data":null}"#).unwrap() {
            Request::Dm { data, .. } => assert_eq!(data.get(), "null"),
            _ => panic!(),
        }
    }

    #[test]
    fn topic_names_are_visible_characters() {
        for ok in [
            "room.1",
            "caf\u{e9}",
            "\u{1f600}",
            "\u{65e5}\u{672c}",
            "a-b_c/d:e",
        ] {
            assert!(valid_topic(ok), "{ok:?}");
        }
        for bad in [
            "a b",
            "a\u{a0}b",
            "a\u{3000}b",
            "a\u{200b}b",
            "a\u{202e}b",
            "a\u{2028}b",
            "a\u{feff}",
            "a\tb",
            "a\u{85}b",
            "a\u{e0041}",
        ] {
            assert!(!valid_topic(bad), "{bad:?}");
        }
        assert!(valid_topic(&"x".repeat(MAX_TOPIC_LEN)));
        assert!(!valid_topic(&"x".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn data_nesting_is_bounded() {
        assert_eq!(json_depth(r#"{"a":[1,{"b":"[[[{"}],"c":"\\\"]"}"#), 3);
        assert_eq!(json_depth("7"), 0);
        // Many brackets, little depth; and brackets inside strings.
        let wide = format!("[{}0]", "[0],".repeat(200));
        assert_eq!(json_depth(&wide), 2);
        assert!(!json_depth_exceeds(&wide, 2) && json_depth_exceeds(&wide, 1));
        let quoted = format!(r#"["{}"]"#, "[".repeat(100));
        assert!(!json_depth_exceeds(&quoted, 1));
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let req = |n: usize| format!(r#"{{"op":"pub","topic":"t","id":3,"data":{}}}"#, deep(n));
        assert!(Request::parse(&req(MAX_DATA_DEPTH)).is_ok());
        let e = Request::parse(&req(MAX_DATA_DEPTH + 1)).unwrap_err();
        assert_eq!(e.id, Some(3));
        assert!(e.message.contains("nested"), "{}", e.message);
        // Far deeper than any recursive parser allows: still answered.
        assert!(Request::parse(&req(100_000)).is_err());
        let dm = format!(
            r#"{{"op":"dm","to":"u","data":{}}}"#,
            deep(MAX_DATA_DEPTH + 1)
        );
        assert!(Request::parse(&dm).is_err());
    }

    #[test]
    fn error_messages_do_not_echo_large_input() {
        let big = "x".repeat(100_000);
        let e = Request::parse(&format!(r#"{{"op":"sub","topic":7,"id":"{big}"}}"#)).unwrap_err();
        assert!(
            e.message.len() <= MAX_ERROR_MESSAGE + 3,
            "{}",
            e.message.len()
        );
        let e = Request::parse(&format!(r#"{{"op":"{big}"}}"#)).unwrap_err();
        assert!(e.message.len() <= MAX_ERROR_MESSAGE + 3);
        assert!(e.message.starts_with("unknown op"));
    }
}
