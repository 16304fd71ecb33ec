//! Per-user and per-address quotas: what one user (or, for anonymous
//! users, one network address) may hold at once, so that no single tenant
//! exhausts what the node shares — connections, subscriptions, topics.
//!
//! | quota | counted over | on excess |
//! |---|---|---|
//! | `max_connections_per_user` | a user's open connections | upgrade refused, `429` |
//! | `max_connections_per_ip` | open connections from one address | upgrade refused, `429` |
//! | `max_subscriptions_per_user` | a user's subscriptions on all its connections (its own inbox not counted) | `too_many_topics` |
//! | `max_topics_per_user` / `max_topics_per_ip` | topics a user (an anonymous user's address) created that still exist (memory engine) | `too_many_topics` |
//!
//! Per-address quotas count the TCP peer's address: behind a proxy every
//! client has the proxy's, so set them to 0 (off) there. Each refusal is
//! counted in `wsmio_quota_hits_total{quota}`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::auth::Identity;
use super::config::HubConfig;
use super::engine::Creator;

/// What one user holds on this node.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    connections: usize,
    subscriptions: usize,
}

/// The counts the quotas are checked against.
#[derive(Debug, Default)]
pub(super) struct Quotas {
    users: HashMap<String, Held>,
    ips: HashMap<IpAddr, usize>,
}

/// Which quota refused something (the metric's label).
pub(super) type Hit = &'static str;

impl Quotas {
    /// May `who`, from `ip`, open one more connection? If so it is counted
    /// (until [`Quotas::disconnected`]).
    pub fn connect(
        &mut self,
        cfg: &HubConfig,
        who: &Identity,
        ip: Option<IpAddr>,
    ) -> Result<(), Hit> {
        let held = self.users.get(&who.user).copied().unwrap_or_default();
        if over(cfg.max_connections_per_user, held.connections) {
            return Err("connections_per_user");
        }
        if let Some(ip) = ip {
            let n = self.ips.get(&ip).copied().unwrap_or(0);
            if over(cfg.max_connections_per_ip, n) {
                return Err("connections_per_ip");
            }
            *self.ips.entry(ip).or_insert(0) += 1;
        }
        self.users.entry(who.user.clone()).or_default().connections += 1;
        Ok(())
    }

    /// A connection counted by [`Quotas::connect`] is gone.
    pub fn disconnected(&mut self, user: &str, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            if let Some(n) = self.ips.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.ips.remove(&ip);
                }
            }
        }
        self.release(user, |h| h.connections = h.connections.saturating_sub(1));
    }

    /// May `user` hold one more subscription? If so it is counted (until
    /// [`Quotas::unsubscribed`]).
    pub fn subscribe(&mut self, cfg: &HubConfig, user: &str) -> Result<(), Hit> {
        let h = self.users.entry(user.to_string()).or_default();
        if over(cfg.max_subscriptions_per_user, h.subscriptions) {
            return Err("subscriptions_per_user");
        }
        h.subscriptions += 1;
        Ok(())
    }

    /// A subscription counted by [`Quotas::subscribe`] ended.
    pub fn unsubscribed(&mut self, user: &str) {
        self.release(user, |h| {
            h.subscriptions = h.subscriptions.saturating_sub(1)
        });
    }

    fn release(&mut self, user: &str, f: impl FnOnce(&mut Held)) {
        if let Some(h) = self.users.get_mut(user) {
            f(h);
            if h.connections == 0 && h.subscriptions == 0 {
                self.users.remove(user);
            }
        }
    }
}

/// Whether `held` is at a quota of `max` (0: no quota).
fn over(max: usize, held: usize) -> bool {
    max > 0 && held >= max
}

/// Who a topic that `who` (from `ip`) creates is charged to: the user, or
/// an anonymous user's address (anonymous ids are free to make).
pub(super) fn creator_key(who: &Identity, ip: Option<IpAddr>) -> String {
    match (who.anonymous, ip) {
        (true, Some(ip)) => format!("ip:{ip}"),
        _ => format!("u:{}", who.user),
    }
}

/// The creator and quota for a topic `who` creates.
pub(super) fn creator<'a>(cfg: &HubConfig, who: &Identity, key: &'a str) -> Creator<'a> {
    let quota = match (who.anonymous, key.starts_with("ip:")) {
        (true, true) => cfg.max_topics_per_ip,
        _ => cfg.max_topics_per_user,
    };
    Creator { key, quota }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, anonymous: bool) -> Identity {
        Identity {
            user: name.into(),
            subscribe: vec![],
            publish: vec![],
            dm: vec![],
            anonymous,
            expires_ms: None,
        }
    }

    #[test]
    fn connections_and_subscriptions_are_counted_and_released() {
        let cfg = HubConfig {
            max_connections_per_user: 2,
            max_connections_per_ip: 3,
            max_subscriptions_per_user: 1,
            ..HubConfig::default()
        };
        let mut q = Quotas::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let alice = user("alice", false);
        assert_eq!(q.connect(&cfg, &alice, Some(ip)), Ok(()));
        assert_eq!(q.connect(&cfg, &alice, Some(ip)), Ok(()));
        assert_eq!(
            q.connect(&cfg, &alice, Some(ip)),
            Err("connections_per_user")
        );
        assert_eq!(q.connect(&cfg, &user("bob", false), Some(ip)), Ok(()));
        assert_eq!(
            q.connect(&cfg, &user("carol", false), Some(ip)),
            Err("connections_per_ip")
        );
        q.disconnected("bob", Some(ip));
        assert_eq!(q.connect(&cfg, &user("carol", false), Some(ip)), Ok(()));
        assert_eq!(q.subscribe(&cfg, "alice"), Ok(()));
        assert_eq!(q.subscribe(&cfg, "alice"), Err("subscriptions_per_user"));
        q.unsubscribed("alice");
        assert_eq!(q.subscribe(&cfg, "alice"), Ok(()));
        // Everything released: nothing kept for the user or the address.
        q.unsubscribed("alice");
        q.disconnected("alice", Some(ip));
        q.disconnected("alice", Some(ip));
        q.disconnected("carol", Some(ip));
        assert!(q.users.is_empty() && q.ips.is_empty(), "{q:?}");
    }

    #[test]
    fn anonymous_topics_are_charged_to_their_address() {
        let cfg = HubConfig::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let anon = user("anon-1", true);
        let key = creator_key(&anon, Some(ip));
        assert_eq!(key, "ip:::1");
        assert_eq!(creator(&cfg, &anon, &key).quota, cfg.max_topics_per_ip);
        let key = creator_key(&user("alice", false), Some(ip));
        assert_eq!(key, "u:alice");
        assert_eq!(
            creator(&cfg, &user("alice", false), &key).quota,
            cfg.max_topics_per_user
        );
    }
}
