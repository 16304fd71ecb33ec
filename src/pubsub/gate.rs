//! The hub's gate: what a request must pass before it becomes a
//! WebSocket (path, `Host`, `Origin`, token), and the plain HTTP routes
//! (`/`, `/healthz`, `/readyz`, `/metrics`, and `426` on the endpoint).

use std::net::IpAddr;

/// The browser client (`wsmio.js`), served at `/wsmio.js`.
const CLIENT_JS: &str = include_str!("wsmio.js");

use super::auth::{verify_jwt, Identity, TokenError};
use super::hub::{random_hex, wall_ms, Hub};
use super::metrics::Metrics;
use crate::proto::handshake::HttpRequest;
use crate::reactor::{ConnId, HttpResponse, Stats, Upgrade};

impl Hub {
    /// Accept or refuse an upgrade request; an accepted one's identity
    /// waits in `pending` for `open`.
    pub(super) fn check_upgrade(
        &mut self,
        id: ConnId,
        req: &HttpRequest,
        secure: bool,
        ip: Option<IpAddr>,
    ) -> Upgrade {
        if req.path_only() != self.config.ws_path {
            self.metrics.reject("path");
            return Upgrade::reject(404, "no WebSocket endpoint at this path");
        }
        if !self.config.hosts.allows(req.header("host")) {
            self.metrics.reject("host");
            return Upgrade::reject(403, "host not allowed");
        }
        if !self
            .config
            .origins
            .allows(req.header("origin"), req.header("host"), secure)
        {
            self.metrics.reject("origin");
            return Upgrade::reject(403, "origin not allowed");
        }
        // An engine that cannot store publishes cannot serve a new client
        // (not even its inbox): it tries again, or another node (the load
        // balancer sees `/readyz`). Clients already here keep what works.
        if !self.engine.ready() {
            self.metrics.reject("engine_unavailable");
            return Upgrade::Reject(
                HttpResponse::text(503, "engine unavailable, retry later")
                    .with_header("Retry-After", "1"),
            );
        }
        match self.authenticate(req) {
            Ok(who) => {
                if let Err(hit) = self.quotas.connect(&self.config, &who, ip) {
                    self.metrics.quota(hit);
                    let why = match hit {
                        "connections_per_ip" => "too many connections from this address",
                        _ => "too many connections for this user",
                    };
                    return Upgrade::Reject(
                        HttpResponse::text(429, why).with_header("Retry-After", "10"),
                    );
                }
                self.pending.insert(id, (who, ip));
                Upgrade::accept()
            }
            Err(e) => {
                self.metrics.reject(e.label());
                Upgrade::Reject(
                    HttpResponse::text(401, e.reason()).with_header("WWW-Authenticate", "Bearer"),
                )
            }
        }
    }

    /// Who the request is: a token's subject, or (without an auth
    /// secret) an anonymous user with a generated id.
    fn authenticate(&mut self, req: &HttpRequest) -> Result<Identity, TokenError> {
        let Some(secret) = &self.config.auth_secret else {
            self.anon_counter += 1;
            let user = format!("anon-{}-{}", random_hex(3), self.anon_counter);
            return Ok(Identity {
                user,
                subscribe: vec!["*".into()],
                publish: vec!["*".into()],
                dm: vec!["*".into()],
                anonymous: true,
                expires_ms: None,
            });
        };
        // RFC 9110 §11.1: the auth scheme name is case-insensitive.
        let bearer = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim_start().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .map(str::trim);
        let token = bearer
            .map(std::borrow::Cow::Borrowed)
            .or_else(|| req.query_param("token"))
            .ok_or(TokenError::Missing)?;
        verify_jwt(&token, secret, &self.config.token_rules, wall_ms())
    }

    /// A plain HTTP request.
    pub(super) fn route_http(&mut self, req: &HttpRequest, reactor: &Stats) -> HttpResponse {
        if req.method != "GET" && req.method != "HEAD" {
            return HttpResponse::text(405, "method not allowed").with_header("Allow", "GET");
        }
        if !self.config.hosts.allows(req.header("host")) {
            return HttpResponse::text(403, "host not allowed");
        }
        match req.path_only() {
            "/" => match self.config.index_html {
                Some(html) => {
                    HttpResponse::new(200, "text/html; charset=utf-8", html.as_bytes().to_vec())
                }
                None => HttpResponse::text(404, "no page here"),
            },
            "/healthz" => HttpResponse::text(200, "ok"),
            // Ready to take traffic: the engine can store publishes. A load
            // balancer drains a node whose Redis is out of reach.
            "/readyz" => match self.engine.ready() {
                true => HttpResponse::text(200, "ready"),
                false => HttpResponse::text(503, "engine unavailable"),
            },
            "/metrics" => {
                let stats = self.engine.stats();
                self.metrics.topics = stats.topics;
                self.metrics.history_bytes = stats.history_bytes;
                self.metrics.sessions = stats.sessions;
                self.metrics.positions = stats.positions;
                self.metrics.idempotency_keys = stats.idempotency_keys;
                self.metrics.local_topics = self.local.len() as u64;
                self.metrics.fanout_waiting = self.fanout.len() as u64;
                self.metrics.fanout_backlog_bytes = self.fanout.backlog();
                self.metrics.subscriptions = self.local.subscriptions() as u64;
                let mut text = self.metrics.render();
                Metrics::render_reactor(reactor, &mut text);
                self.engine.render_metrics(&mut text);
                HttpResponse::new(200, "text/plain; version=0.0.4", text.into_bytes())
            }
            "/wsmio.js" => HttpResponse::new(
                200,
                "text/javascript; charset=utf-8",
                CLIENT_JS.as_bytes().to_vec(),
            )
            .with_header("Cache-Control", "no-cache"),
            p if p == self.config.ws_path => self.probe(req),

            _ => HttpResponse::text(404, "not found"),
        }
    }

    /// A plain GET of the WebSocket endpoint: the status an upgrade with
    /// the same headers and query would be refused with (401, 403, 429,
    /// 503), or `426` when it would pass. A browser sees a refused upgrade
    /// only as close code 1006; the JS client asks this way to tell "try
    /// again later" from "stop" (`wsmio.js`). Nothing is kept.
    fn probe(&mut self, req: &HttpRequest) -> HttpResponse {
        if !self.engine.ready() {
            return HttpResponse::text(503, "engine unavailable, retry later")
                .with_header("Retry-After", "1");
        }
        if let Err(e) = self.authenticate(req) {
            return HttpResponse::text(401, e.reason()).with_header("WWW-Authenticate", "Bearer");
        }
        HttpResponse::text(426, "WebSocket endpoint: upgrade required")
            .with_header("Upgrade", "websocket")
    }

    /// Count a request the reactor refused (bounded label set: the status
    /// class, not the free-text reason).
    pub(super) fn count_rejection(&mut self, status: u16) {
        self.metrics.reject(match status {
            400 => "bad_request",
            405 => "method",
            408 => "handshake_timeout",
            426 => "version",
            431 => "head_too_large",
            503 => "connection_limit",
            _ => "other",
        });
    }
}
