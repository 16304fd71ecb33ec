// wsmio.js — the browser client of the wsmio hub (docs/PROTOCOL.md), served
// by the hub at /wsmio.js. An ES module, no build step, no dependencies.
//
//   import { Hub } from "/wsmio.js";
//   const hub = new Hub("wss://chat.example.com/ws", { token: () => getToken() });
//   hub.subscribe("room.1", { onMessage: (m) => show(m.data) });
//   await hub.publish("room.1", { text: "hi" });   // resolves with the ack
//
// What it does for the application:
// - reconnects with exponential backoff and full jitter (a random wait up
//   to min(maxDelay, baseDelay * 2^attempt)), and resets the backoff only
//   after a connection has stayed up `stableAfter` ms, so a server that
//   accepts and then closes is not hammered;
// - knows close codes: 1000 from us ends it; 1008 "token expired" asks
//   `token()` for a fresh token and reconnects at once; 4000–4999 and
//   401/403 stop and report (`stopped`); anything else reconnects. A
//   browser shows a refused upgrade only as 1006, so after a connection
//   that never opened the client asks the endpoint over plain HTTP, where
//   the hub answers with the status the upgrade got;
// - resubscribes every topic after a reconnect, from the last seq it saw
//   (or from the user's acknowledged position: `since: "acked"`), drops
//   duplicates by seq, and reports `recovered`, `gap` and `reset`;
// - keeps publishes made while disconnected in a bounded outbox and sends
//   them after the reconnect, each with an idempotency key, so that one
//   sent again after a drop is stored once; `publish()` resolves with its
//   ack;
// - acknowledges what the application processed (`autoAck`, or `ack()`),
//   batched: one cumulative ack per topic every `ackEvery` ms;
// - keeps each topic's member list (`onPresence`): read a page at a time
//   after the subscription, kept current with `presence_diff`, replaced by
//   the bare count while the hub sends `presence_count` (a big topic), and
//   read again when the list may have drifted.

const DEFAULTS = {
  token: null,             // () => string | Promise<string> (a token for ?token=)
  baseDelay: 500,          // ms, first reconnect delay's ceiling
  maxDelay: 15000,         // ms, the cap
  stableAfter: 5000,       // ms up before the backoff starts over
  outboxLimit: 100,        // publishes kept while disconnected
  ackEvery: 1000,          // ms between batched acks
  autoAck: true,           // ack each message after its onMessage returns
  requestTimeout: 15000,   // ms an outstanding request waits for its answer
  maxMembers: 1000,        // most members read for a topic's list (onPresence)
                           // (a topic over the hub's presence_events_max has
                           // its count only: no diffs would keep a list current)
  WebSocket: globalThis.WebSocket,
  fetch: globalThis.fetch ? globalThis.fetch.bind(globalThis) : null,
};

/** A reconnecting client of one hub endpoint. */
export class Hub {
  constructor(url, options = {}) {
    this.url = url;
    this.opt = { ...DEFAULTS, ...options };
    this.ws = null;
    this.state = "connecting";  // connecting | open | waiting | stopped
    this.user = null;
    this.welcome = null;
    this.topics = new Map();    // topic -> {handlers, last: {epoch, seq}, live, since}
    this.pending = new Map();   // request id -> {resolve, reject, timer, kind}
    this.outbox = [];           // {req, resolve, reject} not yet sent
    this.nextId = 1;
    this.attempt = 0;
    this.openedAt = 0;
    this.listeners = new Map();
    this.acked = new Map();     // topic -> seq acknowledged to the server
    this.toAck = new Map();     // topic -> {epoch, seq} processed, not yet acked
    this.ackTimer = setInterval(() => this.flushAcks(), this.opt.ackEvery);
    this.retryTimer = null;
    this.connect();
  }

  // ------------------------------------------------------------ events

  /** Listen for `state`, `welcome`, `open`, `close`, `reconnecting`,
   *  `stopped`, `error`, `recovered`, `gap`, `reset`, `presence_diff`,
   *  `presence_count`. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, arg) {
    for (const fn of this.listeners.get(event) || []) {
      try {
        fn(arg);
      } catch (e) {
        setTimeout(() => { throw e; });
      }
    }
  }

  setState(s, detail) {
    this.state = s;
    this.emit("state", { state: s, ...detail });
  }

  // ------------------------------------------------------------ API

  /** Subscribe to `topic`. `handlers`: onMessage(msg), onGap(gap),
   *  onReset(reset), onJoin({topic, user, ts}), onLeave(…), onAck(ack),
   *  onPresence({members, count}) with the member list kept current
   *  (`members` is null while the topic is too big to list: the count
   *  alone), since: "acked" to start from the user's acknowledged
   *  position. Returns an object with `unsubscribe()`. */
  subscribe(topic, handlers = {}) {
    const t = {
      handlers, last: null, live: false, since: handlers.since || null,
      roster: { members: null, count: 0, loading: null, queued: [] },
    };
    this.topics.set(topic, t);
    if (this.state === "open") this.sendSub(topic, t);
    return { unsubscribe: () => this.unsubscribe(topic) };
  }

  unsubscribe(topic) {
    this.topics.delete(topic);
    this.toAck.delete(topic);
    this.acked.delete(topic);
    if (this.state === "open") this.send({ op: "unsub", topic, id: this.id() });
  }

  /** Publish `data` on `topic`; resolves with the ack. While disconnected
   *  the publish waits in the outbox (at most `outboxLimit`). */
  publish(topic, data, { excludeSelf = false } = {}) {
    const req = { op: "pub", topic, data, idempotency_key: newKey() };
    if (excludeSelf) req.exclude_self = true;
    return this.queue(req);
  }

  /** A direct message to `user`; resolves with the ack. */
  dm(user, data) {
    return this.queue({ op: "dm", to: user, data, idempotency_key: newKey() });
  }

  /** One page of who is subscribed to `topic` (`limit`, and `cursor` from
   *  the previous page's answer); resolves with the presence answer. */
  presence(topic, { limit, cursor } = {}) {
    const req = { op: "presence", topic };
    if (limit) req.limit = limit;
    if (cursor) req.cursor = cursor;
    return this.request(req);
  }

  /** Every member of `topic` (at most `max`), page by page: resolves with
   *  {members, count, complete}. */
  async members(topic, max = this.opt.maxMembers) {
    const members = [];
    let cursor = null;
    let count = 0;
    do {
      const p = await this.presence(topic, { limit: 256, cursor });
      members.push(...p.members);
      count = p.count;
      cursor = p.cursor;
    } while (cursor && members.length < max);
    return { members, count, complete: !cursor };
  }

  /** Say that `topic` was processed up to `seq` (batched; cumulative). */
  ack(topic, seq, epoch) {
    const cur = this.toAck.get(topic);
    if (!cur || cur.seq < seq || cur.epoch !== epoch) this.toAck.set(topic, { seq, epoch });
  }

  /** Stop for good: close, fail what waits. */
  close() {
    this.stop("closed by the application", 1000);
  }

  // ------------------------------------------------------------ connection

  async connect() {
    this.retryTimer = null;
    if (this.state === "stopped") return;
    this.setState("connecting");
    let url = this.url;
    if (this.opt.token) {
      try {
        const token = await this.opt.token();
        if (token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
      } catch (e) {
        this.emit("error", { message: "token(): " + e });
        return this.retry();
      }
    }
    if (this.state === "stopped") return;
    let ws;
    try {
      ws = new this.opt.WebSocket(url);
    } catch (e) {
      return this.stop("bad URL: " + e.message);
    }
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      this.setState("open");
      this.emit("open", {});
    };
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onclose = (e) => this.onClose(ws, e.code, e.reason, url);
  }

  async onClose(ws, code, reason, url) {
    if (ws !== this.ws) return;
    const opened = this.openedAt > 0;
    const upFor = opened ? Date.now() - this.openedAt : 0;
    this.ws = null;
    this.openedAt = 0;
    this.welcome = null; // publishes wait in the outbox until the next one
    for (const t of this.topics.values()) t.live = false;
    this.failPending("disconnected");
    this.emit("close", { code, reason });
    if (this.state === "stopped") return;
    if (upFor >= this.opt.stableAfter) this.attempt = 0;
    if (code >= 4000 && code <= 4999) return this.stop(`closed with ${code}: ${reason}`, code);
    if (code === 1008 && /token expired/.test(reason) && this.opt.token) {
      this.attempt = 0;
      return this.connect(); // token() is asked again
    }
    if (!opened && this.opt.fetch) {
      // A refused upgrade looks like 1006 here: ask over plain HTTP.
      const status = await this.probe(url);
      if (status === 401 || status === 403) return this.stop(`refused: HTTP ${status}`, status);
    }
    this.retry();
  }

  /** The status a plain GET of the endpoint gets (the hub answers it with
   *  what the upgrade would get), or 0. */
  async probe(url) {
    try {
      const http = url.replace(/^ws/, "http");
      const res = await this.opt.fetch(http, { cache: "no-store" });
      return res.status;
    } catch {
      return 0;
    }
  }

  retry() {
    if (this.state === "stopped") return;
    const ceiling = Math.min(this.opt.maxDelay, this.opt.baseDelay * 2 ** this.attempt);
    const delay = Math.random() * ceiling; // full jitter
    this.attempt = Math.min(this.attempt + 1, 30);
    this.setState("waiting", { delay });
    this.emit("reconnecting", { delay, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  stop(why, code) {
    if (this.state === "stopped") return;
    this.setState("stopped", { reason: why, code });
    this.emit("stopped", { reason: why, code });
    clearInterval(this.ackTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "bye");
    this.failPending(why);
    for (const o of this.outbox.splice(0)) o.reject(new Error(why));
  }

  // ------------------------------------------------------------ requests

  id() {
    return this.nextId++;
  }

  send(obj) {
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** A request answered by `ack`/`presence`/`error` with its id. */
  request(req, kind = "request") {
    return new Promise((resolve, reject) => {
      if (this.state !== "open") return reject(new Error("not connected"));
      const id = this.id();
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("no answer within " + this.opt.requestTimeout + " ms"));
      }, this.opt.requestTimeout);
      this.pending.set(id, { resolve, reject, timer, kind, req });
      this.send({ ...req, id });
    });
  }

  /** A publish: now if connected, else (or if the connection drops before
   *  its ack) from the outbox after the reconnect — same idempotency key,
   *  so the server stores it once. */
  queue(req) {
    return new Promise((resolve, reject) => {
      if (this.state === "stopped") return reject(new Error("stopped"));
      const entry = { req, resolve, reject };
      if (this.state === "open" && this.welcome) return this.sendQueued(entry);
      if (this.outbox.length >= this.opt.outboxLimit) {
        return reject(new Error("outbox full (" + this.opt.outboxLimit + ")"));
      }
      this.outbox.push(entry);
    });
  }

  sendQueued(entry) {
    const id = this.id();
    const timer = setTimeout(() => {
      this.pending.delete(id);
      entry.reject(new Error("no ack within " + this.opt.requestTimeout + " ms"));
    }, this.opt.requestTimeout);
    this.pending.set(id, { resolve: entry.resolve, reject: entry.reject, timer, kind: "publish", entry });
    this.send({ ...entry.req, id });
  }

  failPending(why) {
    const again = [];
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      // A publish whose ack did not come goes back to the outbox, in
      // order: sent again after the reconnect with the same key, it is
      // stored once.
      if (p.kind === "publish" && this.state !== "stopped") again.push(p.entry);
      else p.reject(new Error(why));
    }
    this.outbox = again.concat(this.outbox);
  }

  /** Send `entry` again after a pause (the hub could not store it yet);
   *  its key makes that safe even if it was stored after all. */
  later(entry) {
    setTimeout(() => {
      if (this.state === "stopped") return entry.reject(new Error("stopped"));
      if (this.state === "open" && this.welcome) this.sendQueued(entry);
      else this.outbox.push(entry);
    }, 500 + Math.random() * 1000);
  }

  flushAcks() {
    for (const [topic, pos] of this.toAck) {
      const t = this.topics.get(topic);
      if (!t || !t.live || this.acked.get(topic) === pos.seq) continue;
      if (this.send({ op: "ack", topic, seq: pos.seq, epoch: pos.epoch })) {
        this.acked.set(topic, pos.seq);
      }
    }
  }

  sendSub(topic, t) {
    const since = t.last || t.since || undefined;
    const req = since ? { op: "sub", topic, since } : { op: "sub", topic };
    this.request(req, "sub").catch(() => {}); // answered in onSubAck
  }

  // ------------------------------------------------------------ messages

  onMessage(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return this.emit("error", { message: "not JSON: " + String(text).slice(0, 80) });
    }
    switch (m.type) {
      case "welcome":
        return this.onWelcome(m);
      case "msg":
        return this.onDelivery(m);
      case "ack":
        return this.onAck(m);
      case "presence":
        return this.answer(m.id, m);
      case "error":
        if (m.id != null && this.pending.has(m.id)) {
          const p = this.pending.get(m.id);
          // The engine could not store it now: try again shortly, with
          // the same idempotency key (so even one that was stored after
          // all, "maybe_stored", is stored once).
          if (p.kind === "publish" && m.code === "unavailable") {
            clearTimeout(p.timer);
            this.pending.delete(m.id);
            return this.later(p.entry);
          }
          const err = new Error(m.code + ": " + m.message);
          err.code = m.code;
          err.reply = m;
          return this.answer(m.id, null, err);
        }
        return this.emit("error", m);
      case "gap":
      case "reset":
        return this.onTopicEvent(m);
      case "presence_diff":
        return this.onPresenceDiff(m);
      case "presence_count":
        return this.onPresenceCount(m);
      default:
        return undefined;
    }
  }

  onWelcome(m) {
    this.user = m.user;
    this.welcome = m;
    this.emit("welcome", m);
    for (const [topic, t] of this.topics) this.sendSub(topic, t);
    for (const entry of this.outbox.splice(0)) this.sendQueued(entry);
  }

  onAck(m) {
    if (m.op === "sub") {
      const t = this.topics.get(m.topic);
      if (t) {
        t.live = true;
        // Where to resume from if no message comes before a disconnect;
        // after an epoch change, the replayed messages move it on.
        if (!t.last || m.epoch_changed) t.last = { epoch: m.epoch, seq: m.seq - (m.replayed || 0) };
        if (m.resumed) this.emit("recovered", m);
        if (t.handlers.onAck) t.handlers.onAck(m);
        if (t.handlers.onPresence) this.loadRoster(m.topic, t);
      }
    }
    this.answer(m.id, m);
  }

  answer(id, value, err) {
    const p = id == null ? null : this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  onDelivery(m) {
    const t = this.topics.get(m.topic);
    if (!t) return;
    // In order per topic, each once: drop what was seen (a replay that
    // overlaps, a duplicate after a reconnect).
    if (t.last && t.last.epoch === m.epoch && m.seq <= t.last.seq) return;
    t.last = { epoch: m.epoch, seq: m.seq };
    if (t.handlers.onMessage) t.handlers.onMessage(m);
    if (this.opt.autoAck) this.ack(m.topic, m.seq, m.epoch);
  }

  /** Joins and leaves of one server turn: applied to the list (read again
   *  if it no longer adds up), then told member by member. */
  onPresenceDiff(m) {
    this.emit("presence_diff", m);
    const t = this.topics.get(m.topic);
    if (!t) return;
    const r = t.roster;
    if (r.loading) {
      r.queued.push(m);
    } else if (r.members) {
      this.applyDiff(r, m);
      // Adds up: current. Else a change was missed (after counts, or a
      // reconnect): read the list again.
      if (r.members.size === m.count) this.rosterChanged(t);
      else this.loadRoster(m.topic, t);
    } else if (t.handlers.onPresence) {
      this.loadRoster(m.topic, t);
    }
    const ts = m.ts;
    for (const user of m.joins) if (t.handlers.onJoin) t.handlers.onJoin({ topic: m.topic, user, ts });
    for (const user of m.leaves) if (t.handlers.onLeave) t.handlers.onLeave({ topic: m.topic, user, ts });
  }

  applyDiff(r, m) {
    for (const u of m.leaves) r.members.delete(u);
    for (const u of m.joins) r.members.add(u);
    r.count = m.count;
  }

  /** Too many members to be told each one: the count alone. */
  onPresenceCount(m) {
    this.emit("presence_count", m);
    const t = this.topics.get(m.topic);
    if (!t) return;
    const r = t.roster;
    r.count = m.count;
    // At most the cap: too many changes at once to list, but few members;
    // read the list again. Over it: the count alone.
    const cap = this.welcome ? this.welcome.presence_events_max : 0;
    if (m.count <= cap && t.handlers.onPresence) return this.loadRoster(m.topic, t);
    r.members = null;
    r.queued = [];
    this.rosterChanged(t);
  }

  /** Read the member list again, page by page; diffs that arrive
   *  meanwhile are applied after it. */
  loadRoster(topic, t) {
    const r = t.roster;
    if (r.loading) return;
    r.queued = [];
    r.loading = this.members(topic)
      .then(({ members, count, complete }) => {
        if (this.topics.get(topic) !== t) return;
        // Over the cap no diffs come to keep a list current: count only.
        const cap = this.welcome ? this.welcome.presence_events_max : Infinity;
        r.members = complete && count <= cap ? new Set(members) : null;
        r.count = count;
        for (const m of r.queued.splice(0)) if (r.members) this.applyDiff(r, m);
        this.rosterChanged(t);
      })
      .catch(() => {})
      .finally(() => { r.loading = null; });
  }

  rosterChanged(t) {
    const r = t.roster;
    if (t.handlers.onPresence) {
      t.handlers.onPresence({ members: r.members ? [...r.members].sort() : null, count: r.count });
    }
  }

  onTopicEvent(m) {
    const t = this.topics.get(m.topic);
    if (m.type === "reset" && t) t.last = { epoch: m.epoch, seq: m.seq };
    this.emit(m.type, m);
    const h = t && t.handlers["on" + m.type[0].toUpperCase() + m.type.slice(1)];
    if (h) h(m);
  }
}

/** A fresh idempotency key (1–128 bytes). */
function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}
