//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the permessage-deflate
//! negotiation (RFC 7692 §5, §7.1) in both roles, on arbitrary header
//! values.
//!
//! Input: byte 0 is the server's config, byte 1 the client's; the rest is
//! the header, split into several header fields at each `\n`.
//!
//! Properties: nothing panics; what parses is made of tokens; the server
//! accepts the first permessage-deflate offer whose parameters are valid
//! and no other; an accepted response validates, in the client that made
//! that offer, to the server's parameters; an offer survives being written
//! and read back; and a response the client accepts keeps every promise of
//! the client's offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmio::proto::extension::{
    negotiate_client, negotiate_server, parse_extensions, validate_response, ClientWindowBits,
    DeflateConfig, Offer, PERMESSAGE_DEFLATE,
};

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn config(b: u8) -> DeflateConfig {
    DeflateConfig {
        outgoing_context_takeover: b & 1 != 0,
        incoming_context_takeover: b & 2 != 0,
        // 7..=14 and 8..=15: outside 9..=15 too, which must be clamped.
        outgoing_max_window_bits: 7 + ((b >> 2) & 7),
        incoming_max_window_bits: 8 + ((b >> 5) & 7),
    }
}

fuzz_target!(|data: &[u8]| {
    let [server_cfg, client_cfg, header @ ..] = data else {
        return;
    };
    let (server_cfg, client_cfg) = (config(*server_cfg), config(*client_cfg));
    let values: Vec<&[u8]> = header.split(|&b| b == b'\n').collect();

    // The grammar: what parses is tokens (quoted values unescaped).
    let parsed = parse_extensions(values.iter().copied());
    if let Ok(exts) = &parsed {
        for e in exts {
            assert!(is_token(e.name));
            for p in &e.params {
                assert!(is_token(p.name));
                if let Some(v) = &p.value {
                    assert!(is_token(v));
                }
            }
        }
    }

    // Server role.
    let accepted = negotiate_server(values.iter().copied(), &server_cfg);
    assert_eq!(accepted.is_err(), parsed.is_err());
    if let Ok(exts) = &parsed {
        let offers: Vec<(usize, Result<Offer, _>)> = exts
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == PERMESSAGE_DEFLATE)
            .map(|(i, e)| (i, Offer::parse(&e.params)))
            .collect();
        let first_valid = offers.iter().find(|(_, o)| o.is_ok());
        match (accepted, first_valid) {
            (Ok(Some(a)), Some((i, Ok(offer)))) => {
                assert_eq!(a.index, *i, "not the first acceptable offer");
                // The client that made this offer agrees.
                assert_eq!(validate_response(offer, &a.response), Ok(a.params));
                let header = a.response.header_value();
                assert_eq!(
                    negotiate_client(offer, [header.as_bytes()]),
                    Ok(Some(a.params))
                );
                // The offer reads back as itself.
                let again = offer.header_value();
                let exts = parse_extensions([again.as_bytes()]).expect("own offer parses");
                assert_eq!(Offer::parse(&exts[0].params).as_ref(), Ok(offer));
                // What the server was asked for, it does.
                let p = a.params;
                assert!(p.server_no_context_takeover || !offer.server_no_context_takeover);
                assert!(offer
                    .server_max_window_bits
                    .is_none_or(|n| p.server_max_window_bits <= n));
                if let ClientWindowBits::Hint(h) = offer.client_max_window_bits {
                    assert!(p.client_max_window_bits <= h);
                }
                if offer.client_max_window_bits == ClientWindowBits::Absent {
                    assert_eq!(a.response.client_max_window_bits, None);
                }
            }
            (Ok(None), None) => {}
            (got, want) => panic!("server chose {got:?}, first valid offer {want:?}"),
        }
    }

    // Client role: the header as the server's response to our offer.
    let offer = Offer::from_config(&client_cfg);
    if let Ok(Some(p)) = negotiate_client(&offer, values.iter().copied()) {
        let exts = parsed.expect("accepted, so it parsed");
        assert_eq!(exts.len(), 1);
        assert_eq!(exts[0].name, PERMESSAGE_DEFLATE);
        assert!(p.server_no_context_takeover || !offer.server_no_context_takeover);
        assert!(p.client_no_context_takeover || !offer.client_no_context_takeover);
        assert!(offer
            .server_max_window_bits
            .is_none_or(|n| p.server_max_window_bits <= n));
        if let ClientWindowBits::Hint(h) = offer.client_max_window_bits {
            assert!(p.client_max_window_bits <= h);
        }
        for bits in [p.server_max_window_bits, p.client_max_window_bits] {
            assert!((8..=15).contains(&bits));
        }
    }
});
