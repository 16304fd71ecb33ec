//! The opening handshake (RFC 6455 §4) on arbitrary bytes: `HeadBuffer`
//! fed in pieces, `parse_request`, the query's decoding, `validate_upgrade`,
//! the responses, and `ClientHandshake::validate_response`.
//!
//! Input: byte 0 chooses how the rest is cut into reads and the head limit;
//! the rest is the request as received.
//!
//! Properties: nothing panics; the head ends at the first `\r\n\r\n`
//! whatever the read sizes; server rejections are 400/405/426/431 and their
//! responses are well-formed HTTP that a client refuses with that status;
//! an accepted request's response is accepted by a client holding that key;
//! query parameters found by name are the first pair of that name.
#![no_main]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use wsmio::proto::handshake::{
    accept_response, find_head_end, parse_request, rejection_response, validate_upgrade,
    ClientHandshake, HeadBuffer, HeadLimits, Rejection,
};

/// Read sizes from a one-byte seed (xorshift): 0 means a single read.
fn pieces(seed: u8, len: usize) -> Vec<usize> {
    if seed == 0 {
        return vec![len];
    }
    let max = 1 + (seed as usize % 32);
    let mut x = seed as u32 | 0x100;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (1 + x as usize % max).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// A refused handshake's response: parseable, with the status, and refused
/// by a client with that same status.
fn check_rejection(rej: &Rejection, allowed: &[u16]) {
    assert!(allowed.contains(&rej.status), "status {}", rej.status);
    let resp = rejection_response(rej);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    let body_at = match r.parse(&resp) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("rejection response does not parse: {other:?}"),
    };
    assert_eq!(r.code, Some(rej.status));
    // RFC 6455 §4.4: a 426 lists the versions the server supports.
    if rej.status == 426 {
        assert!(r
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-version") && h.value == b"13"));
    }
    let len: usize = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .expect("content-length");
    assert_eq!(resp.len() - body_at, len);
    let client = ClientHandshake::new(*b"the sample nonce", &[]);
    let err = client
        .validate_response(&resp[..body_at], &HeadLimits::default())
        .unwrap_err();
    assert_eq!(err.status, rej.status);
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = HeadLimits {
        max_head_size: if seed & 0x80 != 0 { 256 } else { 8192 },
        max_headers: if seed & 0x40 != 0 { 4 } else { 64 },
    };

    // The client side on arbitrary bytes: no panic, and the only success is
    // a 101 (§4.1: anything else ends the handshake).
    let client = ClientHandshake::new(*b"the sample nonce", &["chat"]);
    if let Ok(p) = client.validate_response(input, &limits) {
        assert!(p.is_none() || p.as_deref() == Some("chat"));
    }

    // The server side: collect the head.
    let mut hb = HeadBuffer::new();
    let mut pushed = 0;
    let mut end = None;
    for n in pieces(seed, input.len()) {
        match hb.push(&input[pushed..pushed + n], limits.max_head_size) {
            Ok(Some(e)) => {
                end = Some(e);
                pushed += n;
                break;
            }
            Ok(None) => pushed += n,
            Err(rej) => {
                check_rejection(&rej, &[431]);
                assert!(pushed + n >= limits.max_head_size);
                return;
            }
        }
    }
    assert_eq!(hb.bytes(), &input[..pushed]);
    // The resumed search finds the same end as one search from the start.
    assert_eq!(end, find_head_end(hb.bytes(), 0));
    let Some(end) = end else {
        return;
    };
    assert!(end <= limits.max_head_size && hb.bytes()[..end].ends_with(b"\r\n\r\n"));
    let (head, rest) = hb.split_off_rest(end);
    assert_eq!(head.len() + rest.len(), pushed);

    let req = match parse_request(&head, &limits) {
        Ok(r) => r,
        Err(rej) => return check_rejection(&rej, &[400, 431]),
    };
    // The target's query, decoded (WHATWG form rules): every parameter
    // found by name is the first pair with that name.
    let pairs: Vec<_> = req.query_params().collect();
    for (name, _) in &pairs {
        let first = pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert_eq!(req.query_param(name).as_ref(), first);
        // A `+` is a space; a decoded `+` was written `%2B`.
        assert!(!name.contains('+') || req.query().is_some_and(|q| q.contains("%2")));
    }
    let key = match validate_upgrade(&req) {
        Ok(k) => k,
        Err(rej) => return check_rejection(&rej, &[400, 405, 426]),
    };
    // §4.2.1 (5): the key is base64 of 16 bytes, so a client created from
    // those 16 bytes sends the same key and accepts the 101 for it.
    let raw: [u8; 16] = BASE64
        .decode(key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .expect("validated key decodes to 16 bytes");
    let offered: Vec<&str> = req.protocols().collect();
    let chosen = offered.first().copied();
    let client = ClientHandshake::new(raw, &offered);
    assert_eq!(client.key(), key);
    let resp = accept_response(key, chosen, &[]);
    assert_eq!(find_head_end(&resp, 0), Some(resp.len()));
    assert_eq!(
        client.validate_response(&resp, &HeadLimits::default()),
        Ok(chosen.map(str::to_string)),
        "request {:?}",
        String::from_utf8_lossy(&head)
    );
});
