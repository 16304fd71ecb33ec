//! The grammar of `Sec-WebSocket-Extensions` (RFC 6455 §9.1): a list of
//! `name *( ";" param )` elements, tokens and quoted strings, bounded by
//! [`MAX_EXTENSIONS`] and [`MAX_PARAMS`]. What the elements mean is the
//! negotiation's business (`extension.rs`).

use std::borrow::Cow;

use super::{MAX_EXTENSIONS, MAX_PARAMS};

/// One element of an extension list: `name *( ";" param )`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: &'a str,
    /// Its parameters, in order (duplicates kept: the extension decides).
    pub params: Vec<Param<'a>>,
}

/// One extension parameter: `name [ "=" ( token | quoted-string ) ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter token.
    pub name: &'a str,
    /// Its value, unquoted and unescaped; `None` when there is no `=`.
    pub value: Option<Cow<'a, str>>,
}

/// A `Sec-WebSocket-Extensions` value that does not follow RFC 6455 §9.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// A byte the grammar does not allow where it stands (a missing token,
    /// a stray separator or control byte, an unterminated quoted string).
    Syntax,
    /// RFC 6455 §9.1: a quoted value must be a token once unescaped.
    QuotedNotToken,
    /// More than [`MAX_EXTENSIONS`] extensions or [`MAX_PARAMS`] parameters.
    TooMany,
}

impl HeaderError {
    /// A short reason for logs and a `400` response.
    pub fn reason(self) -> &'static str {
        match self {
            HeaderError::Syntax => "malformed Sec-WebSocket-Extensions",
            HeaderError::QuotedNotToken => "quoted extension parameter is not a token",
            HeaderError::TooMany => "too many extensions or parameters",
        }
    }
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HeaderError {}

/// RFC 7230 §3.2.6 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cursor over one header value.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// RFC 7230 §3.2.3 OWS (and RFC 2616's implied LWS between words and
    /// separators, which RFC 6455 §9.1 is written with).
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, HeaderError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(HeaderError::Syntax);
        }
        // tchars are ASCII, so this cannot fail.
        std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| HeaderError::Syntax)
    }

    /// RFC 7230 §3.2.6 quoted-string, unescaped; the cursor is on the `"`.
    fn quoted(&mut self) -> Result<Cow<'a, str>, HeaderError> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let b = self.peek().ok_or(HeaderError::Syntax)?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    let e = self.peek().ok_or(HeaderError::Syntax)?;
                    if e != b'\t' && (e < 0x20 || e == 0x7f) {
                        return Err(HeaderError::Syntax);
                    }
                    let buf = owned.get_or_insert_with(|| self.s[start..self.pos - 1].to_vec());
                    buf.push(e);
                    self.pos += 1;
                }
                // qdtext excludes controls other than HTAB, and DEL.
                b if b != b'\t' && (b < 0x20 || b == 0x7f) => return Err(HeaderError::Syntax),
                b => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(b);
                    }
                }
            }
        }
        let value: Cow<'a, [u8]> = match owned {
            Some(buf) => Cow::Owned(buf),
            None => Cow::Borrowed(&self.s[start..self.pos - 1]),
        };
        // RFC 6455 §9.1: "the value after quoted-string unescaping MUST
        // conform to the 'token' ABNF".
        if value.is_empty() || !value.iter().all(|&b| is_tchar(b)) {
            return Err(HeaderError::QuotedNotToken);
        }
        match value {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| HeaderError::Syntax),
            Cow::Owned(b) => String::from_utf8(b)
                .map(Cow::Owned)
                .map_err(|_| HeaderError::Syntax),
        }
    }
}

/// Parse the `Sec-WebSocket-Extensions` values of one request or response,
/// in order. Several header fields form one list (RFC 7230 §3.2.2), so pass
/// every value of the header.
///
/// RFC 6455 §9.1:
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
/// Empty list elements and whitespace around separators are accepted
/// (RFC 7230 §7); names are kept as sent (compared case-sensitively by
/// the negotiation, as other implementations do).
///
/// ```
/// use wsmio::proto::extension::parse_extensions;
///
/// let exts = parse_extensions([
///     &b"permessage-deflate; client_max_window_bits, x-foo"[..],
///     &b"permessage-deflate;server_max_window_bits=\"10\""[..],
/// ])
/// .unwrap();
/// assert_eq!(exts.len(), 3);
/// assert_eq!(exts[2].params[0].value.as_deref(), Some("10"));
/// ```
pub fn parse_extensions<'a, I>(values: I) -> Result<Vec<Extension<'a>>, HeaderError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    for value in values {
        parse_list(value, &mut out)?;
    }
    Ok(out)
}

fn parse_list<'a>(s: &'a [u8], out: &mut Vec<Extension<'a>>) -> Result<(), HeaderError> {
    let mut c = Cursor { s, pos: 0 };
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(()),
            // RFC 7230 §7: empty list elements are ignored.
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        if out.len() == MAX_EXTENSIONS {
            return Err(HeaderError::TooMany);
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                None | Some(b',') => break,
                Some(b';') => c.pos += 1,
                Some(_) => return Err(HeaderError::Syntax),
            }
            if params.len() == MAX_PARAMS {
                return Err(HeaderError::TooMany);
            }
            c.skip_ows();
            let pname = c.token()?;
            c.skip_ows();
            let value = if c.peek() == Some(b'=') {
                c.pos += 1;
                c.skip_ows();
                Some(if c.peek() == Some(b'"') {
                    c.quoted()?
                } else {
                    Cow::Borrowed(c.token()?)
                })
            } else {
                None
            };
            params.push(Param { name: pname, value });
        }
        out.push(Extension { name, params });
    }
}
