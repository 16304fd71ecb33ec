//! WebSocket URLs (RFC 6455 §3): `ws://host[:port]/path?query` and
//! `wss://…`, split into what a client needs to connect and to write its
//! request (the `Host` header, the request target, whether to use TLS and
//! the server name to check).

use std::fmt;

/// A parsed `ws://` or `wss://` URL.
///
/// ```
/// use wsmio::reactor::WsUrl;
///
/// let u = WsUrl::parse("wss://chat.example.com/ws?token=abc").unwrap();
/// assert!(u.secure);
/// assert_eq!((u.host.as_str(), u.port), ("chat.example.com", 443));
/// assert_eq!(u.target, "/ws?token=abc");
/// assert_eq!(u.host_header(), "chat.example.com");
/// let v = WsUrl::parse("ws://[::1]:9001").unwrap();
/// assert_eq!((v.host.as_str(), v.port, v.target.as_str()), ("::1", 9001, "/"));
/// assert_eq!(v.host_header(), "[::1]:9001");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss`: TLS.
    pub secure: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port (default 80 for `ws`, 443 for `wss`).
    pub port: u16,
    /// Path and query, the request target (`/` if the URL has none).
    /// RFC 6455 §3: a fragment is not allowed.
    pub target: String,
}

/// Why a URL is not a WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `ws://` or `wss://`.
    Scheme,
    /// No host, or a malformed one.
    Host,
    /// A port that is not a number from 1 to 65535.
    Port,
    /// RFC 6455 §3: "Fragment identifiers are meaningless in the context
    /// of WebSocket URIs and MUST NOT be used".
    Fragment,
    /// User information (`user@host`) has no meaning here.
    UserInfo,
    /// Whitespace or control characters.
    Characters,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "a WebSocket URL starts with ws:// or wss://",
            UrlError::Host => "missing or malformed host",
            UrlError::Port => "port must be a number from 1 to 65535",
            UrlError::Fragment => "a WebSocket URL has no #fragment (RFC 6455 §3)",
            UrlError::UserInfo => "user@ is not supported in a WebSocket URL",
            UrlError::Characters => "whitespace or control characters in the URL",
        })
    }
}

impl std::error::Error for UrlError {}

impl WsUrl {
    /// Parse `url`. The scheme and host are case-insensitive (kept as
    /// given, lowercased for the scheme).
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Characters);
        }
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::Scheme)?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(UrlError::Scheme),
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_authority(authority)?;
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or(UrlError::Port)?,
            None if secure => 443,
            None => 80,
        };
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(WsUrl {
            secure,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The `Host` header (RFC 7230 §5.4): the port only if it is not the
    /// scheme's default; an IPv6 address in brackets.
    pub fn host_header(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        let default = if self.secure { 443 } else { 80 };
        match self.port == default {
            true => host,
            false => format!("{host}:{}", self.port),
        }
    }

    /// `host:port` for name resolution (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// The URL with `key=value` added to its query (values are taken as
    /// given: percent-encode them first if they need it).
    pub fn with_query(&self, key: &str, value: &str) -> WsUrl {
        let sep = if self.target.contains('?') { '&' } else { '?' };
        WsUrl {
            target: format!("{}{sep}{key}={value}", self.target),
            ..self.clone()
        }
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_authority(a: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UrlError::Host)?;
        if host.is_empty() || host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::Host);
        }
        return match after {
            "" => Ok((host, None)),
            p => Ok((host, Some(p.strip_prefix(':').ok_or(UrlError::Host)?))),
        };
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if host.is_empty() || !host.chars().all(ok) {
        return Err(UrlError::Host);
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_their_errors() {
        let u = WsUrl::parse("WS://Example.com:8080/a/b?c=d").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.target.as_str()),
            (false, "Example.com", 8080, "/a/b?c=d")
        );
        assert_eq!(u.host_header(), "Example.com:8080");
        assert_eq!(u.to_string(), "ws://Example.com:8080/a/b?c=d");
        let q = WsUrl::parse("ws://h?x=1").unwrap();
        assert_eq!((q.port, q.target.as_str()), (80, "/?x=1"));
        assert_eq!(q.with_query("token", "t").target, "/?x=1&token=t");
        assert_eq!(
            WsUrl::parse("wss://h/")
                .unwrap()
                .with_query("a", "b")
                .target,
            "/?a=b"
        );
        assert_eq!(WsUrl::parse("ws://[::1]/").unwrap().authority(), "[::1]:80");
        for (bad, e) in [
            ("http://h/", UrlError::Scheme),
            ("h:80/", UrlError::Scheme),
            ("ws:///x", UrlError::Host),
            ("ws://h:0/", UrlError::Port),
            ("ws://h:65536/", UrlError::Port),
            ("ws://h:x/", UrlError::Port),
            ("ws://h/#f", UrlError::Fragment),
            ("ws://u@h/", UrlError::UserInfo),
            ("ws://h /", UrlError::Characters),
            ("ws://[::1/", UrlError::Host),
            ("ws://[nope]/", UrlError::Host),
            ("ws://[::1]x/", UrlError::Host),
            ("ws://h%41/", UrlError::Host),
        ] {
            assert_eq!(WsUrl::parse(bad), Err(e), "{bad}");
        }
    }
}
