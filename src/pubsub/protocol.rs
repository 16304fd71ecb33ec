//! The hub's wire protocol: JSON text frames (see `docs/PROTOCOL.md`).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Where a resuming client left off.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Since {
    /// The epoch of the last delivery the client saw.
    pub epoch: String,
    /// Its sequence number.
    pub seq: u64,
}

/// A client request.
#[derive(Debug)]
pub enum Request<'a> {
    /// Subscribe to a topic, optionally resuming after `since`.
    Sub {
        /// Request id, echoed in the ack or error.
        id: Option<u64>,
        /// Topic name.
        topic: String,
        /// Resume point.
        since: Option<Since>,
    },
    /// Unsubscribe.
    Unsub {
        /// Request id.
        id: Option<u64>,
        /// Topic name.
        topic: String,
    },
    /// Publish `data` (any JSON value) on a topic.
    Pub {
        /// Request id; the ack carries the sequence number.
        id: Option<u64>,
        /// Topic name.
        topic: String,
        /// Payload, passed through as raw JSON.
        data: &'a RawValue,
        /// Do not deliver to the publishing connection.
        exclude_self: bool,
    },
    /// A direct message to every connection of user `to` (through the
    /// user's inbox topic, so it has history).
    Dm {
        /// Request id.
        id: Option<u64>,
        /// Recipient user id.
        to: String,
        /// Payload.
        data: &'a RawValue,
    },
    /// Members and count of a topic.
    Presence {
        /// Request id.
        id: Option<u64>,
        /// Topic name.
        topic: String,
    },
}

/// The flat shape every request shares on the wire. (A serde-tagged enum
/// would buffer the payload and could not pass `data` through raw.)
#[derive(Deserialize)]
struct Wire<'a> {
    op: String,
    id: Option<u64>,
    topic: Option<String>,
    since: Option<Since>,
    to: Option<String>,
    // `null` is a payload too: absent is `None`, `null` is `Some("null")`.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default)]
    exclude_self: bool,
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
    /// Parse one request.
    pub fn parse(text: &'a str) -> Result<Request<'a>, BadRequest> {
        let w: Wire<'a> = serde_json::from_str(text).map_err(|e| BadRequest {
            // E.g. no `op`, or a field of the wrong type: the id may still
            // be readable.
            id: request_id(text),
            message: truncated(format!("invalid request: {e}")),
        })?;
        let id = w.id;
        let missing = |field: &str| BadRequest {
            id,
            message: truncated(format!("'{}' needs '{field}'", w.op)),
        };
        if let Some(d) = w.data {
            if json_depth_exceeds(d.get(), MAX_DATA_DEPTH) {
                return Err(BadRequest {
                    id,
                    message: format!("'data' is nested deeper than {MAX_DATA_DEPTH} levels"),
                });
            }
        }
        Ok(match w.op.as_str() {
            "sub" => Request::Sub {
                id,
                topic: w.topic.clone().ok_or_else(|| missing("topic"))?,
                since: w.since.clone(),
            },
            "unsub" => Request::Unsub {
                id,
                topic: w.topic.clone().ok_or_else(|| missing("topic"))?,
            },
            "pub" => Request::Pub {
                id,
                topic: w.topic.clone().ok_or_else(|| missing("topic"))?,
                data: w.data.ok_or_else(|| missing("data"))?,
                exclude_self: w.exclude_self,
            },
            "dm" => Request::Dm {
                id,
                to: w.to.clone().ok_or_else(|| missing("to"))?,
                data: w.data.ok_or_else(|| missing("data"))?,
            },
            "presence" => Request::Presence {
                id,
                topic: w.topic.clone().ok_or_else(|| missing("topic"))?,
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
        }
    }
}

/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 128;

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
        // `data` is already valid JSON (it was parsed as a RawValue). The
        // fields are written by serde_json straight into one buffer: no
        // `Value` per field (this runs once per publish).
        let mut out = Vec::with_capacity(
            96 + self.topic.len()
                + self.epoch.len()
                + self.node.len()
                + self.from.len()
                + self.data.len(),
        );
        out.extend_from_slice(br#"{"type":"msg","topic":"#);
        json(&mut out, self.topic);
        out.extend_from_slice(br#","seq":"#);
        json(&mut out, &self.seq);
        out.extend_from_slice(br#","epoch":"#);
        json(&mut out, self.epoch);
        out.extend_from_slice(br#","node":"#);
        json(&mut out, self.node);
        out.extend_from_slice(br#","from":"#);
        json(&mut out, self.from);
        out.extend_from_slice(br#","ts":"#);
        json(&mut out, &self.ts);
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(self.data.as_bytes());
        out.push(b'}');
        // Only UTF-8 went in: `str`s, ASCII, and serde_json's escapes.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Append `v` as JSON (strings quoted and escaped, integers in decimal),
/// written by serde_json straight into `out`.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `{"type":"ack", ...}` with extra fields.
pub fn ack(id: Option<u64>, mut extra: Value) -> String {
    if let Some(obj) = extra.as_object_mut() {
        obj.insert("type".into(), "ack".into());
        obj.insert("id".into(), id.into());
    }
    extra.to_string()
}

/// `{"type":"error", ...}`.
pub fn error(id: Option<u64>, code: ErrorCode, message: &str) -> String {
    json!({"type":"error","id":id,"code":code.as_str(),"message":message}).to_string()
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
            } => {
                assert_eq!(
                    (id, topic.as_str(), data.get(), exclude_self),
                    (Some(7), "t", r#"{"a":[1,2]}"#, false)
                );
            }
            _ => panic!(),
        }
        let r =
            Request::parse(r#"{"op":"sub","topic":"t","since":{"epoch":"e","seq":3}}"#).unwrap();
        assert!(matches!(
            r,
            Request::Sub {
                since: Some(Since { seq: 3, .. }),
                ..
            }
        ));
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
        assert!(!valid_topic("") && !valid_topic("a b") && valid_topic("room.1"));
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
