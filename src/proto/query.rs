//! Query strings of request targets (`/ws?token=a%2Bb&room=main`), decoded
//! by the WHATWG URL Standard's `application/x-www-form-urlencoded` parser
//! (§5.1), which is what browsers use for `URLSearchParams` and form data:
//!
//! 1. the query is split at `&`; empty pieces are skipped;
//! 2. a piece is split at its first `=` into name and value (no `=`: the
//!    value is empty);
//! 3. `+` becomes a space — before percent-decoding, so `%2B` is a `+`;
//! 4. `%` and two hex digits become that byte; a `%` without two hex
//!    digits after it stays as it is (`%zz`, `100%`);
//! 5. the bytes are read as UTF-8, an invalid sequence becoming U+FFFD.
//!
//! A name or value without `%` or `+` is borrowed from the query, not
//! copied.

use std::borrow::Cow;

/// The decoded (name, value) pairs of `query` (the part after `?`), in
/// order, duplicates kept.
///
/// ```
/// use wsmio::proto::query::pairs;
///
/// let got: Vec<_> = pairs("room=caf%C3%A9&q=a+b%2Bc&flag&&=x").collect();
/// assert_eq!(got, [
///     ("room".into(), "café".into()),
///     ("q".into(), "a b+c".into()),
///     ("flag".into(), "".into()),
///     ("".into(), "x".into()),
/// ]);
/// ```
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        (decode(name), decode(value))
    })
}

/// Decode one name or value: `+` is a space, `%XX` a byte, the result
/// UTF-8 (invalid sequences as U+FFFD). Borrowed when there is nothing to
/// decode.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The value of an ASCII hex digit.
fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(q: &str) -> Vec<(String, String)> {
        pairs(q)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Cases from the WHATWG URL Standard §5.1 and its test suite
    /// (urlencoded-parser).
    #[test]
    fn whatwg_cases() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("test", &[("test", "")]),
            ("\u{FEFF}test=\u{FEFF}", &[("\u{FEFF}test", "\u{FEFF}")]),
            ("%EF%BB%BFtest=%EF%BB%BF", &[("\u{FEFF}test", "\u{FEFF}")]),
            ("%FE%FF", &[("\u{FFFD}\u{FFFD}", "")]),
            ("%C2", &[("\u{FFFD}", "")]),
            ("%C2x", &[("\u{FFFD}x", "")]),
            (
                "_charset_=windows-1252&test=%C2x",
                &[("_charset_", "windows-1252"), ("test", "\u{FFFD}x")],
            ),
            ("", &[]),
            ("a", &[("a", "")]),
            ("a=b", &[("a", "b")]),
            ("a=", &[("a", "")]),
            ("=b", &[("", "b")]),
            ("&", &[]),
            ("&a", &[("a", "")]),
            ("a&", &[("a", "")]),
            ("a&a", &[("a", ""), ("a", "")]),
            ("a&b&c", &[("a", ""), ("b", ""), ("c", "")]),
            ("a=b&c=d", &[("a", "b"), ("c", "d")]),
            ("a=b&c=d&", &[("a", "b"), ("c", "d")]),
            ("&&&a=b&&&&c=d&", &[("a", "b"), ("c", "d")]),
            ("a=a&a=b&a=c", &[("a", "a"), ("a", "b"), ("a", "c")]),
            ("a==a", &[("a", "=a")]),
            ("a=a+b+c+d", &[("a", "a b c d")]),
            ("%=a", &[("%", "a")]),
            ("%a=a", &[("%a", "a")]),
            ("%a_=a", &[("%a_", "a")]),
            ("%61=a", &[("a", "a")]),
            ("%61+%4d%4D=", &[("a MM", "")]),
            ("id=0&value=%", &[("id", "0"), ("value", "%")]),
            ("b=%2sf%2a", &[("b", "%2sf*")]),
            ("b=%2%2af%2a", &[("b", "%2*f*")]),
            ("b=%%2a", &[("b", "%*")]),
            ("token=a%2Bb+c", &[("token", "a+b c")]),
        ];
        for (q, want) in cases {
            assert_eq!(all(q), owned(want), "query {q:?}");
        }
    }

    #[test]
    fn nothing_to_decode_is_borrowed() {
        assert!(matches!(decode("plain-token_1.2~"), Cow::Borrowed(_)));
        assert!(matches!(decode("a+b"), Cow::Owned(_)));
    }

    /// The parser step by step as §5.1 words it, for the property test:
    /// `+` replaced in the whole piece, then percent-decoding over a list
    /// of bytes, then lossy UTF-8.
    fn reference(query: &str) -> Vec<(String, String)> {
        fn percent_decode(input: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = input;
            while let Some((&b, tail)) = rest.split_first() {
                let pair = tail
                    .get(..2)
                    .filter(|p| p.iter().all(u8::is_ascii_hexdigit));
                match (b, pair) {
                    (b'%', Some(p)) => {
                        let text = std::str::from_utf8(p).unwrap();
                        out.push(u8::from_str_radix(text, 16).unwrap());
                        rest = &tail[2..];
                    }
                    _ => {
                        out.push(b);
                        rest = tail;
                    }
                }
            }
            out
        }
        let mut out = Vec::new();
        for piece in query.as_bytes().split(|&b| b == b'&') {
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &[][..]),
            };
            let plus = |s: &[u8]| -> Vec<u8> {
                s.iter()
                    .map(|&b| if b == b'+' { b' ' } else { b })
                    .collect()
            };
            let text = |s: &[u8]| String::from_utf8_lossy(&percent_decode(&plus(s))).into_owned();
            out.push((text(name), text(value)));
        }
        out
    }

    proptest! {
        /// Queries from the characters that matter (separators, `+`, `%`,
        /// hex digits and not, multi-byte UTF-8 and its encoded bytes).
        #[test]
        fn decodes_as_the_reference(q in proptest::collection::vec(
            prop_oneof![
                Just("&"), Just("="), Just("+"), Just("%"), Just("a"), Just("F"),
                Just("0"), Just("9"), Just("g"), Just("é"), Just("%C3"), Just("%A9"),
                Just("%2B"), Just("%2b"), Just("%FF"), Just("%26"), Just("%3D"), Just(" "),
            ],
            0..24,
        ).prop_map(|v| v.concat())) {
            prop_assert_eq!(all(&q), reference(&q));
        }

        #[test]
        fn any_text_decodes_as_the_reference(q in ".{0,40}") {
            prop_assert_eq!(all(&q), reference(&q));
        }
    }
}
