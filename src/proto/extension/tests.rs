//! Tests of `proto::extension`: the RFC 6455 §9.1 grammar, every bad
//! permessage-deflate parameter in both roles, and the property that both
//! ends agree.

use super::syntax::is_tchar;
use super::*;
use proptest::prelude::*;
use std::borrow::Cow;

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn parse(s: &str) -> Result<Vec<Extension<'_>>, HeaderError> {
    parse_extensions([s.as_bytes()])
}

fn offer(s: &str) -> Result<Offer, ParamError> {
    let exts = parse(s).expect("syntax");
    assert_eq!(exts.len(), 1);
    Offer::parse(&exts[0].params)
}

fn response(s: &str) -> Result<Response, ParamError> {
    let exts = parse(s).expect("syntax");
    assert_eq!(exts.len(), 1);
    Response::parse(&exts[0].params)
}

fn server(values: &[&str], config: &DeflateConfig) -> Option<Accepted> {
    negotiate_server(values.iter().map(|v| v.as_bytes()), config).expect("syntax")
}

fn client(offer: &Offer, values: &[&str]) -> Result<Option<DeflateParams>, NegotiationError> {
    negotiate_client(offer, values.iter().map(|v| v.as_bytes()))
}

// ------------------------------------------------------------------ syntax

#[test]
fn parses_lists_params_and_quoted_values() {
    let e = parse("permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-webkit-deflate-frame").unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].name, "permessage-deflate");
    assert_eq!(e[0].params.len(), 2);
    assert_eq!(e[0].params[0].name, "client_max_window_bits");
    assert_eq!(e[0].params[0].value, None);
    assert_eq!(e[0].params[1].value.as_deref(), Some("10"));
    assert_eq!(e[1].name, "x-webkit-deflate-frame");
    assert!(e[1].params.is_empty());

    // Whitespace around every separator, quoted values with escapes.
    let e = parse("  a ;\tb = \"1\\0\" ; c=\"x\"  ,b").unwrap();
    assert_eq!(e[0].params[0].value.as_deref(), Some("10"));
    assert!(matches!(e[0].params[0].value, Some(Cow::Owned(_))));
    assert!(matches!(e[0].params[1].value, Some(Cow::Borrowed("x"))));
    assert_eq!(e[1].name, "b");
}

#[test]
fn several_header_fields_form_one_list() {
    let e = parse_extensions([&b"a, b"[..], b"", b"c; p"]).unwrap();
    let names: Vec<_> = e.iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn empty_elements_are_ignored() {
    // RFC 7230 §7.
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse(" , ,, ").unwrap(), vec![]);
    assert_eq!(parse(",a,,b,").unwrap().len(), 2);
}

#[test]
fn rejects_what_the_grammar_does_not_allow() {
    for bad in [
        ";",
        "a;",
        "a; ;b",
        "a b",
        "a;b c",
        "a;=1",
        "a;b=",
        "a;b==1",
        "a;b=1 2",
        "a;b=\"1",
        "a;b=\"1\\",
        "a;b=\"1\"2",
        "a;b=1;",
        "a/b",
        "a;b=(1)",
        "a;b=\"1\u{7f}\"",
        "a;b=\"\x01\"",
        "é",
        "a\r\n",
    ] {
        assert_eq!(parse(bad), Err(HeaderError::Syntax), "{bad:?}");
    }
    // RFC 6455 §9.1: a quoted value must be a token once unescaped.
    for bad in [
        "a;b=\"\"",
        "a;b=\"1 0\"",
        "a;b=\"a,b\"",
        "a;b=\"\\\"\"",
        "a;b=\"é\"",
    ] {
        assert_eq!(parse(bad), Err(HeaderError::QuotedNotToken), "{bad:?}");
    }
}

#[test]
fn limits_extensions_and_params() {
    let many = vec!["a"; MAX_EXTENSIONS].join(",");
    assert_eq!(parse(&many).unwrap().len(), MAX_EXTENSIONS);
    assert_eq!(parse(&format!("{many},a")), Err(HeaderError::TooMany));
    let params = format!("a{}", ";p".repeat(MAX_PARAMS));
    assert_eq!(parse(&params).unwrap()[0].params.len(), MAX_PARAMS);
    assert_eq!(parse(&format!("{params};p")), Err(HeaderError::TooMany));
}

// ------------------------------------------------------- offer parameters

#[test]
fn reads_valid_offers() {
    assert_eq!(offer("permessage-deflate"), Ok(Offer::default()));
    assert_eq!(
        offer("permessage-deflate; client_max_window_bits"),
        Ok(Offer {
            client_max_window_bits: ClientWindowBits::Supported,
            ..Offer::default()
        })
    );
    assert_eq!(
        offer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=\"15\""
        ),
        Ok(Offer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(8),
            client_max_window_bits: ClientWindowBits::Hint(15),
        })
    );
}

#[test]
fn every_bad_offer_parameter_is_refused() {
    use DeflateParam::*;
    let cases: &[(&str, ParamError)] = &[
        // RFC 7692 §5: not defined for use in an offer.
        ("permessage-deflate; foo", ParamError::Unknown),
        (
            "permessage-deflate; Server_No_Context_Takeover",
            ParamError::Unknown,
        ),
        (
            "permessage-deflate; server_max_window_bits=10; x=1",
            ParamError::Unknown,
        ),
        // RFC 7692 §5: the same parameter twice.
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ParamError::Duplicate(ServerNoContextTakeover),
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            ParamError::Duplicate(ClientNoContextTakeover),
        ),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            ParamError::Duplicate(ServerMaxWindowBits),
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            ParamError::Duplicate(ClientMaxWindowBits),
        ),
        // RFC 7692 §7.1.1.1, §7.1.1.2: these have no value.
        (
            "permessage-deflate; server_no_context_takeover=1",
            ParamError::UnexpectedValue(ServerNoContextTakeover),
        ),
        (
            "permessage-deflate; client_no_context_takeover=\"true\"",
            ParamError::UnexpectedValue(ClientNoContextTakeover),
        ),
        // RFC 7692 §7.1.2.1: server_max_window_bits has a value.
        (
            "permessage-deflate; server_max_window_bits",
            ParamError::MissingValue(ServerMaxWindowBits),
        ),
    ];
    for (s, e) in cases {
        assert_eq!(offer(s), Err(*e), "{s}");
    }
    // RFC 7692 §7.1.2: 8..=15, decimal, no leading zero.
    for v in [
        "7", "16", "0", "08", "015", "1a", "a", "99", "255", "256", "-9", "+9", "9.0", "１０",
    ] {
        for p in [ServerMaxWindowBits, ClientMaxWindowBits] {
            let s = format!("permessage-deflate; {}={v}", p.as_str());
            if let Ok(exts) = parse(&s) {
                assert_eq!(
                    Offer::parse(&exts[0].params),
                    Err(ParamError::BadWindowBits(p)),
                    "{s}"
                );
            }
        }
    }
    for n in 8..=15 {
        assert_eq!(
            offer(&format!("permessage-deflate; server_max_window_bits={n}"))
                .map(|o| o.server_max_window_bits),
            Ok(Some(n))
        );
    }
}

// ----------------------------------------------------------- server role

#[test]
fn browser_offer_with_default_config() {
    let a = server(
        &["permessage-deflate; client_max_window_bits"],
        &DeflateConfig::default(),
    )
    .unwrap();
    assert_eq!(
        a.response.header_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(
        a.params,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    );
    assert_eq!(a.index, 0);
}

#[test]
fn context_takeover_when_both_sides_allow_it() {
    let config = DeflateConfig {
        outgoing_context_takeover: true,
        incoming_context_takeover: true,
        ..DeflateConfig::default()
    };
    let a = server(&["permessage-deflate; client_max_window_bits"], &config).unwrap();
    assert_eq!(a.response.header_value(), "permessage-deflate");
    assert!(!a.params.server_no_context_takeover);
    assert!(!a.params.client_no_context_takeover);
    // The client's requests bind the server whatever its config.
    let a = server(
        &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
        &config,
    )
    .unwrap();
    assert_eq!(
        a.response.header_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

#[test]
fn first_acceptable_offer_wins() {
    let config = DeflateConfig::default();
    let a = server(
        &[
            "x-other, permessage-deflate; foo, permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
        ],
        &config,
    )
    .unwrap();
    assert_eq!(a.index, 3);
    assert_eq!(a.params.server_max_window_bits, 10);
    // Nothing acceptable: declined.
    assert_eq!(server(&["permessage-deflate; a, x-other"], &config), None);
    assert_eq!(server(&[], &config), None);
    assert_eq!(server(&["PerMessage-Deflate"], &config), None);
    // A header that does not parse is an error for the caller to map.
    assert_eq!(
        negotiate_server([&b"permessage-deflate;;"[..]], &config),
        Err(HeaderError::Syntax)
    );
}

#[test]
fn window_bits_follow_the_offer_and_the_config() {
    let cfg = |out: u8, inc: u8| DeflateConfig {
        outgoing_max_window_bits: out,
        incoming_max_window_bits: inc,
        ..DeflateConfig::default()
    };
    let resp = |s: &str, c: DeflateConfig| server(&[s], &c).unwrap();

    // §7.1.2.1: an offered value is answered with the same or a smaller one.
    let a = resp("permessage-deflate; server_max_window_bits=12", cfg(15, 15));
    assert_eq!(a.response.server_max_window_bits, Some(12));
    let a = resp("permessage-deflate; server_max_window_bits=12", cfg(10, 15));
    assert_eq!(a.response.server_max_window_bits, Some(10));
    let a = resp("permessage-deflate; server_max_window_bits=15", cfg(15, 15));
    assert_eq!(a.response.server_max_window_bits, Some(15));
    // Not offered: the server may still announce a smaller window.
    let a = resp("permessage-deflate", cfg(11, 15));
    assert_eq!(a.response.server_max_window_bits, Some(11));
    assert_eq!(a.params.server_max_window_bits, 11);
    let a = resp("permessage-deflate", cfg(15, 15));
    assert_eq!(a.response.server_max_window_bits, None);
    // 8 is accepted as 8 (proto::deflate stays within 256 bytes).
    let a = resp("permessage-deflate; server_max_window_bits=8", cfg(15, 15));
    assert_eq!(a.response.server_max_window_bits, Some(8));
    assert_eq!(a.params.outgoing(Role::Server).max_window_bits, 8);
    // The config cannot go below 9 or above 15.
    let a = resp("permessage-deflate", cfg(3, 200));
    assert_eq!(a.params.server_max_window_bits, 9);

    // §7.1.2.2: never client_max_window_bits unless offered.
    let a = resp("permessage-deflate", cfg(15, 10));
    assert_eq!(a.response.client_max_window_bits, None);
    assert_eq!(a.params.client_max_window_bits, 15);
    let a = resp("permessage-deflate; client_max_window_bits", cfg(15, 10));
    assert_eq!(a.response.client_max_window_bits, Some(10));
    let a = resp("permessage-deflate; client_max_window_bits=12", cfg(15, 10));
    assert_eq!(a.response.client_max_window_bits, Some(10));
    let a = resp("permessage-deflate; client_max_window_bits=9", cfg(15, 10));
    assert_eq!(a.response.client_max_window_bits, Some(9));
    assert_eq!(a.params.incoming(Role::Server).max_window_bits, 9);
    let a = resp("permessage-deflate; client_max_window_bits=15", cfg(15, 15));
    assert_eq!(a.response.client_max_window_bits, None);
}

// ----------------------------------------------------------- client role

#[test]
fn offer_from_config() {
    assert_eq!(
        Offer::from_config(&DeflateConfig::default()).header_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         client_max_window_bits"
    );
    let c = DeflateConfig {
        outgoing_context_takeover: true,
        incoming_context_takeover: true,
        outgoing_max_window_bits: 10,
        incoming_max_window_bits: 12,
    };
    assert_eq!(
        Offer::from_config(&c).header_value(),
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    );
}

#[test]
fn every_bad_response_fails_the_connection() {
    use DeflateParam::*;
    let plain = Offer {
        client_max_window_bits: ClientWindowBits::Supported,
        ..Offer::default()
    };
    let strict = Offer {
        server_no_context_takeover: true,
        server_max_window_bits: Some(10),
        ..Offer::default()
    };
    let cases: &[(&Offer, &str, NegotiationError)] = &[
        (
            &plain,
            "permessage-deflate;",
            NegotiationError::Header(HeaderError::Syntax),
        ),
        (&plain, "x-other", NegotiationError::NotOffered),
        (
            &plain,
            "permessage-deflate, x-other",
            NegotiationError::NotOffered,
        ),
        (
            &plain,
            "permessage-deflate, permessage-deflate",
            NegotiationError::Repeated,
        ),
        (
            &plain,
            "permessage-deflate; foo",
            NegotiationError::Param(ParamError::Unknown),
        ),
        (
            &plain,
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            NegotiationError::Param(ParamError::Duplicate(ServerNoContextTakeover)),
        ),
        (
            &plain,
            "permessage-deflate; client_no_context_takeover=1",
            NegotiationError::Param(ParamError::UnexpectedValue(ClientNoContextTakeover)),
        ),
        (
            &plain,
            "permessage-deflate; server_max_window_bits",
            NegotiationError::Param(ParamError::MissingValue(ServerMaxWindowBits)),
        ),
        // §7.1.2.2: in a response, client_max_window_bits has a value.
        (
            &plain,
            "permessage-deflate; client_max_window_bits",
            NegotiationError::Param(ParamError::MissingValue(ClientMaxWindowBits)),
        ),
        (
            &plain,
            "permessage-deflate; client_max_window_bits=16",
            NegotiationError::Param(ParamError::BadWindowBits(ClientMaxWindowBits)),
        ),
        (
            &plain,
            "permessage-deflate; server_max_window_bits=07",
            NegotiationError::Param(ParamError::BadWindowBits(ServerMaxWindowBits)),
        ),
        (
            &Offer::default(),
            "permessage-deflate; client_max_window_bits=10",
            NegotiationError::ClientWindowNotOffered,
        ),
        (
            &strict,
            "permessage-deflate; server_max_window_bits=10",
            NegotiationError::ContextTakeoverRefused,
        ),
        (
            &strict,
            "permessage-deflate; server_no_context_takeover",
            NegotiationError::ServerWindowTooLarge,
        ),
        (
            &strict,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            NegotiationError::ServerWindowTooLarge,
        ),
    ];
    for (o, r, e) in cases {
        assert_eq!(client(o, &[r]), Err(*e), "{r}");
    }
}

#[test]
fn valid_responses_give_the_agreed_parameters() {
    let o = Offer {
        client_no_context_takeover: true,
        client_max_window_bits: ClientWindowBits::Hint(12),
        ..Offer::default()
    };
    // Declined: no header at all.
    assert_eq!(client(&o, &[]), Ok(None));
    // The server may add server_no_context_takeover and a smaller server
    // window unasked; a client window above our hint keeps our hint.
    assert_eq!(
        client(
            &o,
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=14"]
        ),
        Ok(Some(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 9,
            client_max_window_bits: 12,
        }))
    );
    assert_eq!(
        client(&o, &["permessage-deflate; client_max_window_bits=8"])
            .map(|p| p.map(|p| p.outgoing(Role::Client))),
        Ok(Some(Direction {
            no_context_takeover: true,
            max_window_bits: 8
        }))
    );
    assert_eq!(
        response("permessage-deflate; server_max_window_bits=\"10\""),
        Ok(Response {
            server_max_window_bits: Some(10),
            ..Response::default()
        })
    );
}

// ------------------------------------------------------------- properties

fn any_config() -> impl Strategy<Value = DeflateConfig> {
    (any::<bool>(), any::<bool>(), 0u8..20, 0u8..20).prop_map(|(o, i, ob, ib)| DeflateConfig {
        outgoing_context_takeover: o,
        incoming_context_takeover: i,
        outgoing_max_window_bits: ob,
        incoming_max_window_bits: ib,
    })
}

fn any_offer() -> impl Strategy<Value = Offer> {
    let bits = prop_oneof![Just(None), (8u8..=15).prop_map(Some)];
    let cmwb = prop_oneof![
        Just(ClientWindowBits::Absent),
        Just(ClientWindowBits::Supported),
        (8u8..=15).prop_map(ClientWindowBits::Hint),
    ];
    (any::<bool>(), any::<bool>(), bits, cmwb).prop_map(|(s, c, b, cb)| Offer {
        server_no_context_takeover: s,
        client_no_context_takeover: c,
        server_max_window_bits: b,
        client_max_window_bits: cb,
    })
}

proptest! {
    /// A wsmio client and a wsmio server agree, whatever their configs.
    #[test]
    fn both_ends_agree(cc in any_config(), sc in any_config()) {
        let offer = Offer::from_config(&cc);
        let a = server(&[&offer.header_value()], &sc).expect("wsmio's offer is acceptable");
        let agreed = client(&offer, &[&a.response.header_value()]);
        prop_assert_eq!(agreed, Ok(Some(a.params)));
        // What each side asked for itself holds.
        prop_assert!(a.params.client_no_context_takeover || cc.outgoing_context_takeover);
        prop_assert!(a.params.server_no_context_takeover || sc.outgoing_context_takeover);
        prop_assert!(a.params.server_max_window_bits <= sc.outgoing_max_window_bits.max(9));
    }

    /// Any valid offer: accepted, and its response validates in the client
    /// that made it, to the server's parameters.
    #[test]
    fn accepted_response_validates(o in any_offer(), sc in any_config()) {
        let header = o.header_value();
        let exts = parse(&header).unwrap();
        prop_assert_eq!(Offer::parse(&exts[0].params), Ok(o));
        let (params, resp) = accept_offer(&o, &sc);
        let resp_header = resp.header_value();
        let exts2 = parse_extensions([resp_header.as_bytes()]).unwrap();
        prop_assert_eq!(Response::parse(&exts2[0].params), Ok(resp));
        prop_assert_eq!(validate_response(&o, &resp), Ok(params));
    }

    /// The parser never panics and, when it succeeds, gives tokens.
    #[test]
    fn parser_total(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(exts) = parse_extensions([&bytes[..]]) {
            for e in exts {
                prop_assert!(is_token(e.name));
                for p in e.params {
                    prop_assert!(is_token(p.name));
                    if let Some(v) = p.value {
                        prop_assert!(is_token(&v));
                    }
                }
            }
        }
    }
}
