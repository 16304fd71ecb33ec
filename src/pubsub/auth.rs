//! Who may connect and what they may do: HS256 JWT verification, topic
//! patterns, and the Origin allowlist. All checked at the upgrade, before
//! any WebSocket frame.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (the token's `sub`, or a generated id for anonymous users).
    pub user: String,
    /// Topic patterns the user may subscribe to.
    pub subscribe: Vec<String>,
    /// Topic patterns the user may publish on.
    pub publish: Vec<String>,
    /// User-id patterns the user may send direct messages to (`*` = anyone).
    pub dm: Vec<String>,
    /// True for a generated anonymous identity.
    pub anonymous: bool,
    /// When the token expires (`exp`, seconds since the Unix epoch); the
    /// hub closes the connection then. `None` for anonymous users.
    pub expires: Option<u64>,
}

impl Identity {
    /// May this user subscribe to `topic`? Everyone may read their own inbox;
    /// another user's inbox only with a pattern that names inboxes (starts
    /// with `@`): `*` or `room.*` do not open other people's direct messages.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        if topic.starts_with('@') {
            return topic == inbox_topic(&self.user)
                || self
                    .subscribe
                    .iter()
                    .any(|p| p.starts_with('@') && matches(p, topic));
        }
        self.subscribe.iter().any(|p| matches(p, topic))
    }

    /// May this user publish on `topic`? (Inboxes are written by direct
    /// messages only.)
    pub fn may_publish(&self, topic: &str) -> bool {
        !topic.starts_with('@') && self.publish.iter().any(|p| matches(p, topic))
    }

    /// May this user send a direct message to user `to`? Each DM to a new
    /// user creates an inbox topic with history, so it is a right the
    /// token grants (the `dm` claim), not one everybody has.
    pub fn may_dm(&self, to: &str) -> bool {
        self.dm.iter().any(|p| matches(p, to))
    }
}

/// A user id must make a valid inbox topic `@id`: 1–127 bytes, no spaces
/// or control characters.
pub fn valid_user_id(user: &str) -> bool {
    !user.is_empty()
        && user.len() < super::protocol::MAX_TOPIC_LEN
        && super::protocol::valid_topic(&inbox_topic(user))
}

/// The per-user topic that carries direct messages (with history).
pub fn inbox_topic(user: &str) -> String {
    format!("@{user}")
}

/// Does `pattern` match `topic`? `*` matches everything; a trailing `*`
/// matches any suffix (`room.*` matches `room.1`); otherwise exact.
pub fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Why a token was refused (the upgrade answers `401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token in `Authorization: Bearer` or `?token=`.
    Missing,
    /// Not three base64url parts of JSON.
    Malformed,
    /// `alg` is not HS256.
    Algorithm,
    /// The signature does not verify.
    Signature,
    /// `exp` is in the past (or missing).
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// No `sub` claim.
    NoSubject,
    /// A `sub` that cannot name an inbox topic (see [`valid_user_id`]).
    BadSubject,
}

impl TokenError {
    /// One-line reason for the `401` body.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => "missing token",
            TokenError::Malformed => "malformed token",
            TokenError::Algorithm => "token algorithm must be HS256",
            TokenError::Signature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::NoSubject => "token has no sub",
            TokenError::BadSubject => "token sub is not a valid user id",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::Algorithm => "token_alg",
            TokenError::Signature => "token_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_nbf",
            TokenError::NoSubject => "token_sub",
            TokenError::BadSubject => "token_bad_sub",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    dm: Vec<String>,
}

/// Verify an HS256 JWT (RFC 7519 / RFC 7515) with `secret` at `now_secs`.
///
/// Claims used: `sub` (user id, required), `exp` (required), `nbf`
/// (optional), `subscribe` and `publish` (topic patterns), `dm` (patterns
/// of user ids that may be sent direct messages); absent lists grant none.
pub fn verify_jwt(token: &str, secret: &[u8], now_secs: u64) -> Result<Identity, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = decode_json(h)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Signature)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
    let claims: Claims = decode_json(p)?;
    let exp = match claims.exp {
        Some(exp) if exp > now_secs => exp,
        _ => return Err(TokenError::Expired),
    };
    if claims.nbf.is_some_and(|nbf| nbf > now_secs) {
        return Err(TokenError::NotYetValid);
    }
    let user = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::NoSubject)?;
    // The user id names the inbox topic `@user`: it must make a valid topic.
    if !valid_user_id(&user) {
        return Err(TokenError::BadSubject);
    }
    Ok(Identity {
        user,
        subscribe: claims.subscribe,
        publish: claims.publish,
        dm: claims.dm,
        anonymous: false,
        expires: Some(exp),
    })
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let raw = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)
}

/// Make an HS256 JWT (for tests, tools and the demo).
pub fn sign_jwt(claims: &serde_json::Value, secret: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{p}.{s}")
}

/// Which browser origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// The Origin's host must equal the request's Host (the default).
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
    /// which Origin checks cannot constrain anyway) and `Host` connect?
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/')) else {
            return true;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            OriginPolicy::SameHost => {
                let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
                host.is_some_and(|h| h.trim().eq_ignore_ascii_case(origin_host))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwt_round_trip_and_failures() {
        let secret = b"s3cret";
        let t = sign_jwt(
            &json!({"sub":"alice","exp":2000,"subscribe":["room.*"],"publish":["room.1"]}),
            secret,
        );
        let id = verify_jwt(&t, secret, 1000).unwrap();
        assert_eq!(id.user, "alice");
        assert!(id.may_subscribe("room.7") && !id.may_subscribe("admin"));
        assert!(id.may_subscribe("@alice") && !id.may_subscribe("@bob"));
        let any = Identity {
            subscribe: vec!["*".into()],
            ..id.clone()
        };
        assert!(
            any.may_subscribe("x") && any.may_subscribe("@alice") && !any.may_subscribe("@bob")
        );
        let moderator = Identity {
            subscribe: vec!["@*".into()],
            ..id.clone()
        };
        assert!(moderator.may_subscribe("@bob") && !moderator.may_subscribe("room.1"));
        assert!(id.may_publish("room.1") && !id.may_publish("room.2"));
        // No `dm` claim: no direct messages; with one, to whom it names.
        assert!(!id.may_dm("bob"));
        let t2 = sign_jwt(&json!({"sub":"al","exp":2000,"dm":["support.*"]}), secret);
        let helpdesk = verify_jwt(&t2, secret, 1000).unwrap();
        assert!(helpdesk.may_dm("support.1") && !helpdesk.may_dm("bob"));
        assert_eq!(verify_jwt(&t, secret, 3000), Err(TokenError::Expired));
        assert_eq!(verify_jwt(&t, b"other", 1000), Err(TokenError::Signature));
        assert_eq!(verify_jwt("a.b", secret, 1000), Err(TokenError::Malformed));
        let mut tampered = t.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify_jwt(&tampered, secret, 1000).is_err());
        let no_sub = sign_jwt(&json!({"exp":2000}), secret);
        assert_eq!(
            verify_jwt(&no_sub, secret, 1000),
            Err(TokenError::NoSubject)
        );
    }

    #[test]
    fn origins() {
        let same = OriginPolicy::parse("");
        assert!(same.allows(Some("http://localhost:9001"), Some("localhost:9001")));
        assert!(!same.allows(Some("http://evil.example"), Some("localhost:9001")));
        assert!(same.allows(None, Some("localhost:9001")));
        let list = OriginPolicy::parse("https://a.example, https://b.example/");
        assert!(list.allows(Some("https://b.example"), None));
        assert!(!list.allows(Some("https://c.example"), None));
        assert_eq!(OriginPolicy::parse("*"), OriginPolicy::Any);
    }
}
