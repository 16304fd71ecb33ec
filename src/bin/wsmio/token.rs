//! `wsmio token`: an HS256 token for testing and the demo.

use crate::serve_args::secret;

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The HS256 secret (the server's --auth-secret).
    #[arg(long, env = "WSMIO_AUTH_SECRET", hide_env_values = true, value_parser = secret)]
    pub secret: String,
    /// User id.
    #[arg(long)]
    pub user: String,
    /// Topic patterns the user may subscribe to (repeatable; `room.*`, `*`).
    #[arg(long = "subscribe", default_value = "*")]
    pub subscribe: Vec<String>,
    /// Topic patterns the user may publish on (repeatable).
    #[arg(long = "publish", default_value = "*")]
    pub publish: Vec<String>,
    /// User-id patterns the user may send direct messages to (repeatable).
    #[arg(long = "dm", default_value = "*")]
    pub dm: Vec<String>,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Audience (`aud`): the server's --token-audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Issuer (`iss`): the server's --token-issuer.
    #[arg(long)]
    pub issuer: Option<String>,
}

pub fn token(a: TokenArgs) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({
        "sub": a.user, "exp": now + a.ttl, "iat": now,
        "subscribe": a.subscribe, "publish": a.publish, "dm": a.dm,
    });
    if let Some(aud) = a.audience {
        claims["aud"] = aud.into();
    }
    if let Some(iss) = a.issuer {
        claims["iss"] = iss.into();
    }
    println!(
        "{}",
        wsmio::pubsub::auth::sign_jwt(&claims, a.secret.as_bytes())
    );
}
