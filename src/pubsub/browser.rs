//! Which browser pages may reach the hub: the `Origin` allowlist and the
//! `Host` allowlist. Both are checked before the upgrade and answered with
//! `403`; neither constrains non-browser clients, which tokens do.
//!
//! Why both: a page on another site is told apart by its `Origin`
//! (RFC 6455 §10.2). A DNS-rebinding page is not: its attacker re-points
//! its own name at this server's address, so the browser sends
//! `Origin: http://evil.example` *and* `Host: evil.example`, and the
//! same-host Origin rule passes. Only a check of the `Host` name itself
//! stops it, which is why a server on a loopback address admits only local
//! names by default.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which browser origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// The Origin must be this server's own origin (the default): the
    /// same host and port as the request's `Host`, and a scheme of the
    /// same class — `http` for a `ws://` server, `https` for `wss://` (a
    /// browser sends the page's origin, RFC 6454 §4; a page of another
    /// scheme is another origin).
    #[default]
    SameHost,
    /// Any origin (must be configured explicitly with `*`).
    Any,
    /// Exactly these origins (e.g. `https://chat.example.com`).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parse a comma-separated allowlist; empty means same host only.
    pub fn parse(s: &str) -> Self {
        let items: Vec<String> = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if items.is_empty() {
            OriginPolicy::SameHost
        } else if items.iter().any(|o| o == "*") {
            OriginPolicy::Any
        } else {
            OriginPolicy::List(items)
        }
    }

    /// May a request with this `Origin` (absent for non-browser clients,
    /// which Origin checks cannot constrain anyway) and `Host` connect to
    /// a server that speaks TLS (`secure`: wss://) or not?
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>, secure: bool) -> bool {
        let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/')) else {
            return true;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            OriginPolicy::SameHost => host.is_some_and(|h| same_origin(origin, h, secure)),
        }
    }
}

/// Is `origin` (`scheme://host[:port]`) this server's origin, reached as
/// `host` (the `Host` header) over TLS or not? Ports left out mean the
/// scheme's default (RFC 6454 §4: 80 for http, 443 for https).
fn same_origin(origin: &str, host: &str, secure: bool) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false; // e.g. `null` (a sandboxed or file page): not ours
    };
    // ws↔http and wss↔https are one class: the page's origin is what the
    // browser sends.
    let (want, default) = if secure { ("https", 443) } else { ("http", 80) };
    if !scheme.eq_ignore_ascii_case(want) {
        return false;
    }
    match (split_port(rest, default), split_port(host.trim(), default)) {
        (Some((a, p)), Some((b, q))) => p == q && a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// `host[:port]` as (host, port), the port `default` when absent; an IPv6
/// literal keeps its brackets. `None` if malformed.
fn split_port(s: &str, default: u16) -> Option<(&str, u16)> {
    // `host_name` trims; the port is found by offset into `s`, so `s`
    // must have nothing to trim (a space before a multi-byte character
    // would put the offset inside it).
    if s.trim() != s {
        return None;
    }
    let name = host_name(s)?;
    let port = &s[name.len()..];
    match port.strip_prefix(':') {
        None if port.is_empty() => Some((name, default)),
        Some(p) => Some((name, p.parse().ok()?)),
        None => None,
    }
}

/// Which `Host` names requests may carry (the DNS-rebinding defence, see
/// the module docs). IP literals are always allowed: a browser sends one
/// only for a page loaded from that address, never for a rebound name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostPolicy {
    /// Any name (the library default; the `wsmio` binary's default when it
    /// listens on an address that is not loopback).
    #[default]
    Any,
    /// `localhost` and names under `.localhost` (RFC 6761 §6.3 reserves
    /// them for loopback), and IP literals: the binary's default on a
    /// loopback address.
    Local,
    /// Exactly these names (a leading `.` also admits any subdomain:
    /// `.example.com`), and IP literals.
    List(Vec<String>),
}

impl HostPolicy {
    /// Parse `--allowed-hosts`: `*` allows any name; `auto` or empty gives
    /// [`HostPolicy::Local`] when `listen_is_loopback` and
    /// [`HostPolicy::Any`] otherwise; anything else is a comma-separated
    /// list of names (a port is dropped, case does not matter, `*.x` means
    /// `.x`). An entry that could never match a `Host` (a URL, `auto` in a
    /// list) is an error, not a silent 403 for every request.
    pub fn parse(s: &str, listen_is_loopback: bool) -> Result<Self, String> {
        let items: Vec<String> = s
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if items.iter().any(|h| h == "*") {
            return Ok(HostPolicy::Any);
        }
        if items.is_empty() || items == ["auto"] {
            return Ok(if listen_is_loopback {
                HostPolicy::Local
            } else {
                HostPolicy::Any
            });
        }
        let mut names = Vec::with_capacity(items.len());
        for item in &items {
            let (dot, rest) = match item.strip_prefix("*.") {
                Some(domain) => (".", domain),
                None => match item.strip_prefix('.') {
                    Some(domain) => (".", domain),
                    None => ("", item.as_str()),
                },
            };
            let name = host_name(rest)
                .map(|n| n.trim_end_matches('.'))
                .filter(|n| {
                    !n.is_empty()
                        && *n != "auto"
                        && n.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"/@?#*".contains(&b))
                })
                .ok_or_else(|| format!("'{item}' is not a host name"))?;
            names.push(format!("{dot}{name}"));
        }
        Ok(HostPolicy::List(names))
    }

    /// May a request with this `Host` header be served? A request without
    /// one (HTTP/1.0; never a browser) is not constrained.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        if *self == HostPolicy::Any {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        if is_ip_literal(name) {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPolicy::Any => true,
            HostPolicy::Local => name == "localhost" || name.ends_with(".localhost"),
            HostPolicy::List(list) => list.iter().any(|h| match h.strip_prefix('.') {
                Some(domain) => {
                    name == domain
                        || name
                            .strip_suffix(domain)
                            .is_some_and(|sub| sub.ends_with('.'))
                }
                None => *h == name,
            }),
        }
    }
}

/// The name in a `Host` header without its port (RFC 9110 §7.2:
/// `uri-host [ ":" port ]`); an IPv6 literal keeps its brackets. `None`
/// for a malformed value.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        (&host[..=end], rest.strip_prefix(':').unwrap_or(rest))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, port),
            None => (host, ""),
        }
    };
    let ok = !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(name)
}

/// An IPv4 address or a bracketed IPv6 address.
fn is_ip_literal(name: &str) -> bool {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => name.parse::<Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_with_spaces_or_tabs_around_the_host_are_not_ours() {
        // Found by fuzz/hub_request: the offset of the port fell inside
        // a multi-byte character and the slice panicked.
        let p = OriginPolicy::SameHost;
        for origin in [
            "http:// \u{2f03}",
            "http://\t\0bix//\t\0b.[ample\u{2f03}",
            "http:// a.b",
        ] {
            assert!(!p.allows(Some(origin), Some("a.b"), false), "{origin:?}");
            assert!(!p.allows(Some(origin), Some(origin), false), "{origin:?}");
        }
        // Around the whole value is the header's own whitespace (RFC 9110 §5.5).
        assert!(p.allows(Some("http://a.b "), Some(" a.b "), false));
    }

    #[test]
    fn origins() {
        let same = OriginPolicy::parse("");
        let plain = |o: &str, h: &str| same.allows(Some(o), Some(h), false);
        let tls = |o: &str, h: &str| same.allows(Some(o), Some(h), true);
        assert!(plain("http://localhost:9001", "localhost:9001"));
        assert!(plain("HTTP://LocalHost:9001", "localhost:9001"));
        assert!(!plain("http://evil.example", "localhost:9001"));
        assert!(
            !plain("http://localhost:9002", "localhost:9001"),
            "another port"
        );
        // The scheme counts: an https page is another origin for ws://.
        assert!(!plain("https://127.0.0.1:9001", "127.0.0.1:9001"));
        assert!(tls("https://127.0.0.1:9001", "127.0.0.1:9001"));
        assert!(!tls("http://127.0.0.1:9001", "127.0.0.1:9001"));
        assert!(
            !plain("ws://localhost:9001", "localhost:9001"),
            "browsers send the page's origin"
        );
        // Default ports, written or not.
        assert!(plain("http://chat.example", "chat.example:80"));
        assert!(tls("https://chat.example:443", "chat.example"));
        assert!(!tls("https://chat.example", "chat.example:80"));
        assert!(plain("http://[::1]:9001", "[::1]:9001"));
        assert!(!plain("null", "localhost:9001"));
        assert!(!plain("http://localhost:x", "localhost:9001"));
        assert!(same.allows(None, Some("localhost:9001"), false));
        let list = OriginPolicy::parse("https://a.example, https://b.example/");
        assert!(list.allows(Some("https://b.example"), None, false));
        assert!(!list.allows(Some("https://c.example"), None, false));
        assert_eq!(OriginPolicy::parse("*"), OriginPolicy::Any);
    }

    #[test]
    fn hosts() {
        let parse = |s: &str, lo: bool| HostPolicy::parse(s, lo).unwrap();
        let local = parse("auto", true);
        assert_eq!(local, HostPolicy::Local);
        assert_eq!(parse("", false), HostPolicy::Any);
        assert_eq!(parse("a.example, *", true), HostPolicy::Any);
        // Ports dropped, `*.x` is `.x`, trailing dots and case ignored.
        assert_eq!(
            parse(
                "Chat.Example.com.:443, *.corp.example, .b.example, [::1]:80",
                false
            ),
            HostPolicy::List(vec![
                "chat.example.com".into(),
                ".corp.example".into(),
                ".b.example".into(),
                "[::1]".into()
            ])
        );
        // Entries that could never match are refused.
        for bad in [
            "http://x.example",
            "auto, x.example",
            "x.example/ws",
            "a@b",
            "x:y",
            ":80",
            "*x",
        ] {
            assert!(HostPolicy::parse(bad, true).is_err(), "{bad}");
        }
        for ok in [
            "localhost",
            "localhost:9001",
            "LocalHost.:9001",
            "app.localhost:80",
            "127.0.0.1:9001",
            "10.1.2.3",
            "[::1]:9001",
            "[::1]",
        ] {
            assert!(local.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example:9001",
            "localhost.evil.example",
            "notlocalhost",
            "127.0.0.1.nip.io",
            "[::1",
            "localhost:90x1",
            ":9001",
            "",
        ] {
            assert!(!local.allows(Some(bad)), "{bad}");
        }
        assert!(local.allows(None));

        let list = parse("chat.example.com, *.corp.example", false);
        for ok in [
            "chat.example.com:443",
            "CHAT.example.com",
            "corp.example",
            "a.b.corp.example",
            "192.0.2.1",
        ] {
            assert!(list.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "example.com",
            "evilcorp.example",
            "chat.example.com.evil.net",
            "localhost",
        ] {
            assert!(!list.allows(Some(bad)), "{bad}");
        }
    }
}
