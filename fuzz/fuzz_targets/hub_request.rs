//! The hub's network-facing text parsers on arbitrary input: the request
//! parser (`pubsub::protocol::Request::parse`), the JSON depth check it
//! applies to `data` (checked against a simple reference), the delivery
//! encoder, token verification and the `Host`/`Origin` checks.
//!
//! Input: any bytes; only valid UTF-8 reaches the hub (text frames are
//! validated before it sees them), so other input is skipped.
//!
//! Properties: nothing panics; error messages stay short (at most 160
//! bytes plus an ellipsis); for every valid JSON text, `json_depth` equals
//! its nesting depth as serde_json reads it (every value counts, duplicate
//! keys included) and `json_depth_exceeds(t, max)` equals
//! `json_depth(t) > max` (its shortcuts change nothing); a parsed `pub` or
//! `dm` never carries `data` deeper than `MAX_DATA_DEPTH`, and its delivery
//! encodes to JSON that reads back with the same topic and data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use wsmio::pubsub::auth::{verify_jwt, TokenRules};
use wsmio::pubsub::protocol::{
    json_depth, json_depth_exceeds, Delivery, Request, MAX_DATA_DEPTH,
};
use wsmio::pubsub::{HostPolicy, OriginPolicy};

/// Reference: nesting depth of a JSON text as serde_json parses it (arrays
/// and objects count 1). Every value of the text counts, so a duplicate key
/// whose first value is deeper counts too (a parsed `Value` keeps only the
/// last one, but the hub delivers the text).
struct Depth;

impl<'de> DeserializeSeed<'de> for Depth {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(Depth)
    }
}

impl<'de> Visitor<'de> for Depth {
    type Value = usize;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_str<E>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<usize, A::Error> {
        let mut d = 0;
        while let Some(x) = a.next_element_seed(Depth)? {
            d = d.max(x);
        }
        Ok(1 + d)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<usize, A::Error> {
        let mut d = 0;
        while a.next_key::<IgnoredAny>()?.is_some() {
            d = d.max(a.next_value_seed(Depth)?);
        }
        Ok(1 + d)
    }
}

/// The depth check against the reference, for a valid JSON text.
fn check_depth(text: &str) {
    let mut de = serde_json::Deserializer::from_str(text);
    let Ok(want) = Depth.deserialize(&mut de).and_then(|d| de.end().map(|()| d)) else {
        return;
    };
    let d = json_depth(text);
    assert_eq!(d, want, "json_depth of {text:?}");
    for max in [0, 1, 2, 3, 7, MAX_DATA_DEPTH] {
        assert_eq!(json_depth_exceeds(text, max), d > max, "max {max}: {text:?}");
    }
}

/// A parsed publish's delivery reads back with the same topic and data.
fn check_delivery(topic: &str, data: &str) {
    assert!(!json_depth_exceeds(data, MAX_DATA_DEPTH));
    let text = Delivery {
        topic,
        seq: 7,
        epoch: "e",
        node: "n",
        from: "u",
        ts: 1,
        data,
    }
    .encode();
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        // serde_json refuses nesting past 128; `data` is at most 64 deep.
        Err(e) => panic!("delivery is not JSON ({e}): {text}"),
    };
    assert_eq!(v["topic"], topic);
    assert_eq!(v["seq"], 7);
    let want: Value = serde_json::from_str(data).expect("data was valid JSON");
    assert_eq!(v["data"], want);
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    check_depth(text);
    match Request::parse(text) {
        Err(bad) => assert!(bad.message.len() <= 160 + '…'.len_utf8(), "{bad:?}"),
        Ok(Request::Pub { topic, data, .. }) => check_delivery(&topic, data.get()),
        Ok(Request::Dm { to, data, .. }) => check_delivery(&to, data.get()),
        Ok(_) => {}
    }
    // Tokens and headers come from the same kind of bytes.
    let rules = TokenRules {
        audience: Some("wsmio".into()),
        issuer: Some("iss".into()),
        leeway_secs: 30,
    };
    let _ = verify_jwt(text, b"fuzz secret", &rules, 1_700_000_000_000);
    let _ = verify_jwt(text, b"", &TokenRules::default(), u64::MAX);
    let local = HostPolicy::Local;
    let _ = local.allows(Some(text));
    if let Ok(listed) = HostPolicy::parse(text, true) {
        let _ = listed.allows(Some(text));
    }
    let _ = OriginPolicy::SameHost.allows(Some(text), Some(text), false);
    let _ = OriginPolicy::SameHost.allows(Some(text), Some(text), true);
    let _ = OriginPolicy::parse(text).allows(Some(text), None, false);
});
