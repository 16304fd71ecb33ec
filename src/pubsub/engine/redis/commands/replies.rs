//! Redis's replies read back into the engine's types: the publish
//! script's receipt, positions, history entries, members. A reply of the
//! wrong shape is `None`, which the caller turns into a typed
//! `EngineError` (never a panic).

use redis::Value;

use super::{Entry, Published, Reply, Sent};
use crate::pubsub::engine::EngineError;

/// Map the reply `v` of `what`.
pub(super) fn reply(what: Sent, v: Value) -> Option<Reply> {
    let bad = || EngineError::Unavailable {
        maybe_stored: false,
    };
    Some(match what {
        Sent::Publish(n) => Reply::Published {
            n,
            result: publish_reply(&v).ok_or(EngineError::Unavailable { maybe_stored: true }),
        },
        Sent::Attach(topic, gen) => Reply::Attached {
            topic,
            gen,
            result: position_reply(&v).ok_or_else(bad),
        },
        Sent::Fetch(topic, after, purpose) => Reply::Fetched {
            topic,
            after,
            purpose,
            result: fetch_reply(v).ok_or_else(bad),
        },
        Sent::Acked(op, topic) => Reply::Acked {
            op,
            topic,
            result: acked_reply(&v).ok_or_else(bad),
        },
        Sent::Members(op, topic, limit) => Reply::Members {
            op,
            topic,
            limit,
            result: members_reply(v).ok_or_else(bad),
        },
        // 0: this node was not listed (its first heartbeat, or Redis lost
        // it, or the others took it for dead); the thread tells them apart.
        Sent::Heartbeat => match v {
            Value::Int(0) => Reply::Rejoin,
            _ => return None,
        },
        Sent::Presence | Sent::Wake | Sent::Goodbye | Sent::Ack { .. } | Sent::PublishBatch(..) => {
            return None
        }
    })
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// `{seq, epoch, duplicate, topic}`.
fn publish_reply(v: &Value) -> Option<Published> {
    let Value::Array(a) = v else { return None };
    Some(Published {
        seq: int(a.first()?)?,
        epoch: string(a.get(1)?.clone())?,
        duplicate: int(a.get(2)?)? == 1,
        topic: string(a.get(3)?.clone())?,
    })
}

/// `HGET` of a session field: `Nil`, or `{epoch}\x1f{seq}`.
fn acked_reply(v: &Value) -> Option<Option<(String, u64)>> {
    match v {
        Value::Nil => Some(None),
        v => {
            let text = string(v.clone())?;
            let (epoch, seq) = text.rsplit_once('\x1f')?;
            Some(Some((epoch.to_string(), seq.parse().ok()?)))
        }
    }
}

/// `{seq, epoch}` (`publish_batch`: the first seq).
pub(super) fn position_reply_rev(v: &Value) -> Option<(u64, String)> {
    let Value::Array(a) = v else { return None };
    Some((int(a.first()?)?, string(a.get(1)?.clone())?))
}

/// `{epoch, seq}`.
fn position_reply(v: &Value) -> Option<(String, u64)> {
    let Value::Array(a) = v else { return None };
    Some((string(a.first()?.clone())?, int(a.get(1)?)?))
}

/// `{epoch, seq, {seq, time, delivery, tag, ...}}`.
fn fetch_reply(v: Value) -> Option<(String, u64, Vec<Entry>)> {
    let Value::Array(a) = v else { return None };
    let mut a = a.into_iter();
    let epoch = string(a.next()?)?;
    let seq = int(&a.next()?)?;
    let Value::Array(flat) = a.next()? else {
        return None;
    };
    let mut entries = Vec::with_capacity(flat.len() / 4);
    let mut it = flat.into_iter();
    while let (Some(s), Some(t), Some(d), Some(o)) = (it.next(), it.next(), it.next(), it.next()) {
        entries.push(Entry {
            seq: int(&s)?,
            ts: int(&t)?,
            text: bytes(d)?,
            tag: string(o).unwrap_or_default(),
        });
    }
    Some((epoch, seq, entries))
}

/// `members`: `{count, {name, ...}}`.
fn members_reply(v: Value) -> Option<(u64, Vec<String>)> {
    let Value::Array(a) = v else {
        return None;
    };
    let mut it = a.into_iter();
    let count = int(&it.next()?)?;
    let Value::Array(names) = it.next()? else {
        return None;
    };
    let names = names.into_iter().map(string).collect::<Option<_>>()?;
    Some((count, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_read_back() {
        let v = Value::Array(vec![Value::Int(7), bulk("ab"), Value::Int(1), bulk("t")]);
        let p = publish_reply(&v).unwrap();
        assert_eq!(
            (p.seq, p.epoch.as_str(), p.duplicate, p.topic.as_str()),
            (7, "ab", true, "t")
        );
        assert_eq!(acked_reply(&Value::Nil), Some(None));
        assert_eq!(acked_reply(&bulk("e\x1f9")), Some(Some(("e".into(), 9))));
        let v = Value::Array(vec![bulk("ab"), Value::Int(0)]);
        assert_eq!(position_reply(&v), Some(("ab".into(), 0)));
        let v = Value::Array(vec![
            bulk("ab"),
            Value::Int(9),
            Value::Array(vec![
                Value::Int(8),
                Value::Int(100),
                bulk("{}"),
                bulk("x.1"),
            ]),
        ]);
        let (e, s, entries) = fetch_reply(v).unwrap();
        assert_eq!((e.as_str(), s, entries.len()), ("ab", 9, 1));
        assert_eq!(
            (entries[0].seq, entries[0].ts, entries[0].tag.as_str()),
            (8, 100, "x.1")
        );
        let v = Value::Array(vec![
            Value::Int(5),
            Value::Array(vec![bulk("alice"), bulk("bob")]),
        ]);
        assert_eq!(
            members_reply(v),
            Some((5, vec!["alice".into(), "bob".into()]))
        );
        assert_eq!(members_reply(Value::Array(vec![Value::Int(5)])), None);
        assert!(publish_reply(&Value::Nil).is_none());
    }
}
