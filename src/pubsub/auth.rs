//! Who may connect and what they may do: HS256 JWT verification (RFC 7519,
//! RFC 7515) and topic patterns, checked at the upgrade before any
//! WebSocket frame. Which browser pages may connect is [`super::browser`].

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
    /// When the token expires: `exp` plus the allowed clock skew
    /// ([`TokenRules::leeway_secs`]), in milliseconds since the Unix epoch;
    /// the hub closes the connection then. `None` for anonymous users.
    pub expires_ms: Option<u64>,
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
    /// The header has `crit`: RFC 7515 §4.1.11 makes the token invalid
    /// unless every listed extension is understood, and none are here.
    Critical,
    /// The signature does not verify.
    Signature,
    /// `exp` is in the past (or missing).
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `aud` does not name this server, or is missing when it must
    /// ([`TokenRules::audience`]).
    Audience,
    /// The token has an `aud` but this server names no audience
    /// ([`TokenRules::audience`] is `None`), so it cannot be the one meant.
    UnexpectedAudience,
    /// `iss` is not the required issuer ([`TokenRules::issuer`]).
    Issuer,
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
            TokenError::Critical => "token has crit header parameters this server does not support",
            TokenError::Signature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::Audience => "token audience does not match",
            TokenError::UnexpectedAudience => {
                "token has an aud claim but the server names no audience (--token-audience)"
            }
            TokenError::Issuer => "token issuer does not match",
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
            TokenError::Critical => "token_crit",
            TokenError::Signature => "token_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_nbf",
            TokenError::Audience | TokenError::UnexpectedAudience => "token_aud",
            TokenError::Issuer => "token_iss",
            TokenError::NoSubject => "token_sub",
            TokenError::BadSubject => "token_bad_sub",
        }
    }
}

/// What a token must satisfy besides its signature (RFC 7519 §4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// This server's name as a token audience. RFC 7519 §4.1.3: a token
    /// whose `aud` does not contain it MUST be refused; so with `None`
    /// (the default) every token that has an `aud` is refused, and with a
    /// name, every token without one.
    pub audience: Option<String>,
    /// The issuer `iss` must equal (`None`, the default: not checked).
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 0).
    pub leeway_secs: u64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    // Present at all (even `null`) is what counts: see `verify_jwt`.
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

/// `Some` for a member that is there, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(list) => list.iter().any(|a| a == name),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    // RFC 7519 §2: a NumericDate may have a fraction.
    exp: Option<f64>,
    nbf: Option<f64>,
    aud: Option<Audience>,
    iss: Option<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    dm: Vec<String>,
}

/// A NumericDate in milliseconds (negative or huge values saturate).
fn numeric_date_ms(secs: f64) -> u64 {
    // Float-to-int `as` saturates (and maps NaN, which JSON cannot carry, to 0).
    (secs * 1000.0) as u64
}

/// Verify an HS256 JWT (RFC 7519 / RFC 7515) with `secret` under `rules`
/// at `now_ms` (milliseconds since the Unix epoch).
///
/// Claims used: `sub` (user id, required), `exp` (required), `nbf`, `aud`
/// and `iss` (see [`TokenRules`]), `subscribe` and `publish` (topic
/// patterns), `dm` (patterns of user ids that may be sent direct
/// messages); absent lists grant none.
pub fn verify_jwt(
    token: &str,
    secret: &[u8],
    rules: &TokenRules,
    now_ms: u64,
) -> Result<Identity, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = decode_json(h)?;
    // RFC 7518 §3.1 names the algorithms; only HS256 is accepted, so a
    // token cannot choose `none` or a key type of its own.
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    // RFC 7515 §4.1.11: unknown critical extensions make the JWS invalid
    // (and an empty list is not allowed either).
    if header.crit.is_some() {
        return Err(TokenError::Critical);
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
    let leeway_ms = rules.leeway_secs.saturating_mul(1000);
    // RFC 7519 §4.1.4: not accepted on or after `exp`.
    let expires_ms = match claims.exp {
        Some(exp) => numeric_date_ms(exp).saturating_add(leeway_ms),
        None => return Err(TokenError::Expired),
    };
    if now_ms >= expires_ms {
        return Err(TokenError::Expired);
    }
    // RFC 7519 §4.1.5: not accepted before `nbf`.
    if claims
        .nbf
        .is_some_and(|nbf| numeric_date_ms(nbf) > now_ms.saturating_add(leeway_ms))
    {
        return Err(TokenError::NotYetValid);
    }
    match (&rules.audience, &claims.aud) {
        (None, None) => {}
        (None, Some(_)) => return Err(TokenError::UnexpectedAudience),
        (Some(ours), Some(aud)) if aud.contains(ours) => {}
        (Some(_), _) => return Err(TokenError::Audience),
    }
    if let Some(issuer) = &rules.issuer {
        if claims.iss.as_deref() != Some(issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
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
        expires_ms: Some(expires_ms),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Verify with the default rules at `now` seconds.
    fn verify(token: &str, secret: &[u8], now: u64) -> Result<Identity, TokenError> {
        verify_jwt(token, secret, &TokenRules::default(), now * 1000)
    }

    /// Sign `claims` under a header of our choosing.
    fn sign_with_header(
        header: &serde_json::Value,
        claims: &serde_json::Value,
        secret: &[u8],
    ) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    #[test]
    fn jwt_round_trip_and_failures() {
        let secret = b"s3cret";
        let t = sign_jwt(
            &json!({"sub":"alice","exp":2000,"subscribe":["room.*"],"publish":["room.1"]}),
            secret,
        );
        let id = verify(&t, secret, 1000).unwrap();
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
        let helpdesk = verify(&t2, secret, 1000).unwrap();
        assert!(helpdesk.may_dm("support.1") && !helpdesk.may_dm("bob"));
        assert_eq!(verify(&t, secret, 3000), Err(TokenError::Expired));
        assert_eq!(verify(&t, b"other", 1000), Err(TokenError::Signature));
        assert_eq!(verify("a.b", secret, 1000), Err(TokenError::Malformed));
        let mut tampered = t.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify(&tampered, secret, 1000).is_err());
        let no_sub = sign_jwt(&json!({"exp":2000}), secret);
        assert_eq!(verify(&no_sub, secret, 1000), Err(TokenError::NoSubject));
    }

    #[test]
    fn jwt_registered_claims() {
        let secret = b"s3cret";
        let at = |claims: serde_json::Value, rules: &TokenRules, now_ms: u64| {
            verify_jwt(&sign_jwt(&claims, secret), secret, rules, now_ms)
        };
        let plain = TokenRules::default();
        // RFC 7519 §2: fractional NumericDates; valid strictly before `exp`.
        let t = json!({"sub":"a","exp":1000.5});
        assert_eq!(
            at(t.clone(), &plain, 1_000_499).unwrap().expires_ms,
            Some(1_000_500)
        );
        assert_eq!(at(t, &plain, 1_000_500), Err(TokenError::Expired));
        assert_eq!(
            at(json!({"sub":"a","exp":-1}), &plain, 0),
            Err(TokenError::Expired)
        );
        assert_eq!(
            at(json!({"sub":"a","exp":"2000"}), &plain, 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(at(json!({"sub":"a"}), &plain, 0), Err(TokenError::Expired));
        let nbf = json!({"sub":"a","exp":2000,"nbf":1000.25});
        assert_eq!(
            at(nbf.clone(), &plain, 1_000_249),
            Err(TokenError::NotYetValid)
        );
        assert!(at(nbf.clone(), &plain, 1_000_250).is_ok());
        // Leeway stretches both ends, and the expiry the hub enforces.
        let skew = TokenRules {
            leeway_secs: 30,
            ..TokenRules::default()
        };
        assert!(at(nbf, &skew, 970_250).is_ok());
        let late = at(json!({"sub":"a","exp":2000}), &skew, 2_029_999).unwrap();
        assert_eq!(late.expires_ms, Some(2_030_000));
        assert_eq!(
            at(json!({"sub":"a","exp":2000}), &skew, 2_030_000),
            Err(TokenError::Expired)
        );

        // RFC 7519 §4.1.3: an `aud` must name us; with no audience of our
        // own, every token with an `aud` is refused.
        let aud = TokenRules {
            audience: Some("wsmio".into()),
            ..TokenRules::default()
        };
        assert!(at(json!({"sub":"a","exp":2000,"aud":"wsmio"}), &aud, 0).is_ok());
        assert!(at(json!({"sub":"a","exp":2000,"aud":["x","wsmio"]}), &aud, 0).is_ok());
        for bad in [json!("other"), json!(["x", "y"]), json!([]), json!(7)] {
            let r = at(json!({"sub":"a","exp":2000,"aud":bad}), &aud, 0);
            assert!(
                matches!(r, Err(TokenError::Audience | TokenError::Malformed)),
                "{bad}"
            );
        }
        assert_eq!(
            at(json!({"sub":"a","exp":2000}), &aud, 0),
            Err(TokenError::Audience)
        );
        assert_eq!(
            at(json!({"sub":"a","exp":2000,"aud":"wsmio"}), &plain, 0),
            Err(TokenError::UnexpectedAudience)
        );
        // `iss`, when required, must match exactly.
        let iss = TokenRules {
            issuer: Some("https://id.example".into()),
            ..TokenRules::default()
        };
        assert!(at(
            json!({"sub":"a","exp":2000,"iss":"https://id.example"}),
            &iss,
            0
        )
        .is_ok());
        assert_eq!(
            at(
                json!({"sub":"a","exp":2000,"iss":"https://id.example/"}),
                &iss,
                0
            ),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            at(json!({"sub":"a","exp":2000}), &iss, 0),
            Err(TokenError::Issuer)
        );
        assert!(at(json!({"sub":"a","exp":2000,"iss":"anyone"}), &plain, 0).is_ok());

        // RFC 7515 §4.1.11: `crit` invalidates the token; `alg` must be HS256.
        let claims = json!({"sub":"a","exp":2000});
        let crit = sign_with_header(
            &json!({"alg":"HS256","crit":["b64"],"b64":false}),
            &claims,
            secret,
        );
        assert_eq!(verify(&crit, secret, 0), Err(TokenError::Critical));
        let null = sign_with_header(&json!({"alg":"HS256","crit":null}), &claims, secret);
        assert_eq!(verify(&null, secret, 0), Err(TokenError::Critical));
        let none = sign_with_header(&json!({"alg":"none"}), &claims, secret);
        assert_eq!(verify(&none, secret, 0), Err(TokenError::Algorithm));
        let ok = sign_with_header(&json!({"alg":"HS256"}), &claims, secret);
        assert!(verify(&ok, secret, 0).is_ok());
    }
}
