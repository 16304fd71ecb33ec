//! The Redis engine's names and message formats: the keys a topic and a
//! node use, and what travels on a topic's pub/sub channel.
//!
//! Keys, under a prefix (`--redis-prefix`, default `wsmio:`) so that
//! several clusters can share one Redis:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}m:{topic}` | hash | `e`: the topic's epoch, `s`: its last seq |
//! | `{p}h:{topic}` | stream | history: entry id `{seq}-0`, fields `d` (the delivery), `t` (Redis time, ms), `o` (origin tag) |
//! | `{p}c:{topic}` | channel | deliveries and presence changes, for the nodes that have subscribers |
//! | `{p}p:{topic}` | hash | members: user → connections on every node |
//! | `{p}u:{topic}` | sorted set | the same users, all scored 0, so that `presence` pages by name (`ZRANGEBYLEX`) |
//! | `{p}n:{instance}` | hash | one node's share of every topic's members: `{topic}\x1f{user}` → connections |
//! | `{p}nodes` | sorted set | live node instances, scored by when their heartbeat expires |
//! | `{p}ctl:{instance}` | channel | wakes a node's subscriber thread (see `subscriber.rs`) |
//! | `{p}s:{user}` | hash | acknowledged positions: topic → `{epoch}\x1f{seq}`; expires `session_ttl` after the user's last ack |
//! | `{p}i:{user}\x1f{key}` | string | an idempotency key's receipt `{seq}\x1f{epoch}\x1f{topic}`; expires after the window |
//!
//! A channel message is one of
//! - `d{seq},{epoch},{tag},{delivery JSON}`: a delivery (the tag names the
//!   node instance and publish that sent it: `{instance}.{n}`);
//! - `b{first},{epoch},{n}` followed by `n` times `,{tag},{length}:{delivery
//!   JSON}`: deliveries `first..first+n-1` published together (one script
//!   run, see `scripts.rs`); the length (bytes) delimits each, as a
//!   payload may hold any byte of JSON text;
//! - `j{ts},{count},{user}` / `l{ts},{count},{user}`: a user joined / left
//!   (`ts`: wall-clock ms of the node that saw it; `count`: the topic's
//!   distinct members right after the change).

/// The keys and channels of one cluster (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A topic's epoch and last seq.
    pub fn meta(&self, topic: &str) -> String {
        format!("{}m:{topic}", self.prefix)
    }

    /// A topic's history stream.
    pub fn history(&self, topic: &str) -> String {
        format!("{}h:{topic}", self.prefix)
    }

    /// A topic's pub/sub channel.
    pub fn channel(&self, topic: &str) -> String {
        format!("{}c:{topic}", self.prefix)
    }

    /// The topic a channel name belongs to, if it is one of ours.
    pub fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix("c:")
    }

    /// A topic's members.
    pub fn members(&self, topic: &str) -> String {
        format!("{}p:{topic}", self.prefix)
    }

    /// A topic's member names, ordered (for paging).
    pub fn member_names(&self, topic: &str) -> String {
        format!("{}u:{topic}", self.prefix)
    }

    /// A node instance's share of the members of every topic.
    pub fn node_members(&self, instance: &str) -> String {
        format!("{}n:{instance}", self.prefix)
    }

    /// The field of `user` in `topic` in [`Keys::node_members`].
    pub fn node_member_field(topic: &str, user: &str) -> String {
        format!("{topic}\x1f{user}")
    }

    /// A user's acknowledged positions.
    pub fn session(&self, user: &str) -> String {
        format!("{}s:{user}", self.prefix)
    }

    /// A user's idempotency key.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        format!("{}i:{user}\x1f{key}", self.prefix)
    }

    /// Live node instances.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// A node instance's wake-up channel.
    pub fn control(&self, instance: &str) -> String {
        format!("{}ctl:{instance}", self.prefix)
    }
}

/// A message on a topic's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMsg<'a> {
    /// A delivery.
    Delivery {
        /// Its seq.
        seq: u64,
        /// Its epoch.
        epoch: &'a str,
        /// Which node instance and publish sent it.
        tag: &'a str,
        /// The delivery JSON.
        text: &'a [u8],
    },
    /// Deliveries `first..` published together.
    Batch {
        /// Seq of the first.
        first: u64,
        /// Their epoch.
        epoch: &'a str,
        /// Each one's tag and delivery JSON, in seq order.
        entries: Vec<(&'a str, &'a [u8])>,
    },
    /// A user's first connection anywhere subscribed (`joined`), or its
    /// last one left.
    Presence {
        /// Joined (else left).
        joined: bool,
        /// Wall-clock ms.
        ts: u64,
        /// Distinct members after the change.
        count: u64,
        /// User id.
        user: &'a str,
    },
}

impl ChannelMsg<'_> {
    /// Read a channel message; `None` if it is not one of ours.
    pub fn parse(payload: &[u8]) -> Option<ChannelMsg<'_>> {
        let (&kind, rest) = payload.split_first()?;
        match kind {
            b'd' => {
                let mut parts = rest.splitn(4, |&b| b == b',');
                let seq = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
                let epoch = std::str::from_utf8(parts.next()?).ok()?;
                let tag = std::str::from_utf8(parts.next()?).ok()?;
                let text = parts.next()?;
                Some(ChannelMsg::Delivery {
                    seq,
                    epoch,
                    tag,
                    text,
                })
            }
            b'b' => ChannelMsg::batch(rest),
            b'j' | b'l' => {
                let rest = std::str::from_utf8(rest).ok()?;
                let (ts, rest) = rest.split_once(',')?;
                let (count, user) = rest.split_once(',')?;
                Some(ChannelMsg::Presence {
                    joined: kind == b'j',
                    ts: ts.parse().ok()?,
                    count: count.parse().ok()?,
                    user,
                })
            }
            _ => None,
        }
    }
}

impl<'a> ChannelMsg<'a> {
    /// `{first},{epoch},{n}` then `n` times `,{tag},{length}:{bytes}`.
    fn batch(rest: &'a [u8]) -> Option<ChannelMsg<'a>> {
        let mut parts = rest.splitn(3, |&b| b == b',');
        let first = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let epoch = std::str::from_utf8(parts.next()?).ok()?;
        let tail = parts.next()?;
        let n_end = tail.iter().position(|&b| b == b',').unwrap_or(tail.len());
        let n: usize = std::str::from_utf8(&tail[..n_end]).ok()?.parse().ok()?;
        let mut rest = &tail[n_end..];
        // Each entry takes at least 5 bytes: never trust `n` for memory.
        let mut entries = Vec::with_capacity(n.min(rest.len() / 5));
        for _ in 0..n {
            rest = rest.strip_prefix(b",")?;
            let tag_end = rest.iter().position(|&b| b == b',')?;
            let tag = std::str::from_utf8(&rest[..tag_end]).ok()?;
            rest = &rest[tag_end + 1..];
            let len_end = rest.iter().position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&rest[..len_end]).ok()?.parse().ok()?;
            rest = &rest[len_end + 1..];
            if rest.len() < len {
                return None;
            }
            entries.push((tag, &rest[..len]));
            rest = &rest[len..];
        }
        rest.is_empty().then_some(ChannelMsg::Batch {
            first,
            epoch,
            entries,
        })
    }
}

/// The origin tag of this instance's `n`th publish.
pub fn tag(instance: &str, n: u64) -> String {
    format!("{instance}.{n}")
}

/// The publish number in `tag` if this instance sent it.
pub fn own_publish(instance: &str, tag: &str) -> Option<u64> {
    tag.strip_prefix(instance)?.strip_prefix('.')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_channels() {
        let k = Keys::new("w:");
        assert_eq!(k.meta("room.1"), "w:m:room.1");
        assert_eq!(k.history("@bob"), "w:h:@bob");
        assert_eq!(k.channel("a:b"), "w:c:a:b");
        assert_eq!(k.topic_of("w:c:a:b"), Some("a:b"));
        assert_eq!(k.topic_of("x:c:a"), None);
        assert_eq!(k.topic_of("w:ctl:abc"), None);
        assert_eq!(Keys::node_member_field("t", "u"), "t\x1fu");
        assert_eq!(k.member_names("a"), "w:u:a");
    }

    #[test]
    fn channel_messages() {
        let d = ChannelMsg::parse(b"d12,ab01,f00d.7,{\"x\":\"a,b\"}").unwrap();
        assert_eq!(
            d,
            ChannelMsg::Delivery {
                seq: 12,
                epoch: "ab01",
                tag: "f00d.7",
                text: b"{\"x\":\"a,b\"}",
            }
        );
        assert_eq!(
            ChannelMsg::parse(b"j1700,3,al,ice"),
            Some(ChannelMsg::Presence {
                joined: true,
                ts: 1700,
                count: 3,
                user: "al,ice"
            })
        );
        assert!(matches!(
            ChannelMsg::parse(b"l5,0,bob"),
            Some(ChannelMsg::Presence {
                joined: false,
                count: 0,
                ..
            })
        ));
        let b = ChannelMsg::parse(b"b7,ep,2,n.1,2:{},n.2,7:[\",\n:\"]").unwrap();
        assert_eq!(
            b,
            ChannelMsg::Batch {
                first: 7,
                epoch: "ep",
                entries: vec![("n.1", &b"{}"[..]), ("n.2", &b"[\",\n:\"]"[..])],
            }
        );
        for bad in [
            &b"b7,ep,2,n.1,2:{}"[..], // one entry short
            b"b7,ep,1,n.1,5:{}",      // shorter than its length
            b"b7,ep,1,n.1,2:{}x",     // bytes after the last
            b"b7,ep,1,n.1,x:{}",
            b"b,ep,1,n.1,2:{}",
        ] {
            assert_eq!(
                ChannelMsg::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b""[..],
            b"x1",
            b"d",
            b"dx,e,t,{}",
            b"d1,e,t",
            b"j,u",
            b"jx,u",
            b"j5",
            b"j5,u",
            b"j5,x,u",
        ] {
            assert_eq!(
                ChannelMsg::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(own_publish("f00d", &tag("f00d", 9)), Some(9));
        assert_eq!(own_publish("f00d", "beef.9"), None);
        assert_eq!(own_publish("f00d", "f00dd.9"), None);
    }
}
