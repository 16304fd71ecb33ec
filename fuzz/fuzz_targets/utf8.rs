//! `utf8::Utf8Validator` (RFC 6455 §8.1: text must be UTF-8, checked as it
//! arrives) must agree with `std::str::from_utf8` on any bytes split at any
//! points, and must fail exactly when the bytes so far can no longer be the
//! start of valid UTF-8 (fail fast, as Autobahn 6.4.x expects).
//!
//! Input: split count (1 byte), then the text. Split points come from the
//! text's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmio::proto::utf8::Utf8Validator;

/// Is `prefix` already invalid whatever bytes follow? (`error_len() ==
/// None` means it only stops inside a code point that is valid so far.)
fn definitely_invalid(prefix: &[u8]) -> bool {
    matches!(std::str::from_utf8(prefix), Err(e) if e.error_len().is_some())
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, text)) = data.split_first() else {
        return;
    };
    let mut cuts: Vec<usize> = text
        .iter()
        .rev()
        .take((n % 16) as usize)
        .map(|&b| (b as usize * 13 + n as usize) % (text.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(text.len());
    cuts.sort_unstable();

    let mut v = Utf8Validator::new();
    let mut result = Ok(());
    for w in cuts.windows(2) {
        result = v.feed(&text[w[0]..w[1]]);
        assert_eq!(
            result.is_err(),
            definitely_invalid(&text[..w[1]]),
            "{text:x?} after chunk {}..{}",
            w[0],
            w[1]
        );
        if result.is_err() {
            break;
        }
        assert_eq!(
            v.is_mid_code_point(),
            std::str::from_utf8(&text[..w[1]]).is_err()
        );
    }
    if result.is_ok() {
        result = v.finish();
    }
    assert_eq!(
        result.is_ok(),
        std::str::from_utf8(text).is_ok(),
        "{text:x?} cut at {cuts:?}"
    );
});
