//! The Redis engine's server-side scripts. Each runs atomically in Redis
//! (nothing else runs meanwhile), so a topic's counter, its history and
//! the message to the other nodes can never disagree.
//!
//! They use `TIME` (Redis's clock, one clock for every node) and keys
//! derived from their arguments, so they need a single Redis server (a
//! primary, with replicas or Sentinel), not Redis Cluster.

use redis::Script;

/// Functions the topic scripts start with (Lua has no code shared between
/// scripts: each carries what it uses, defined again at every call, which
/// costs a fraction of a microsecond).
macro_rules! lua_topic {
    () => {
        r#"
-- The topic's epoch, created (with an empty history) if it has none.
local function topic_epoch(meta, history, new_epoch, ttl)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = new_epoch
    redis.call('HSET', meta, 'e', epoch, 's', 0)
    redis.call('DEL', history)
    if ttl then redis.call('PEXPIRE', meta, ttl) end
  end
  return epoch
end
-- Entries past the age limit leave from the front, up to 16 at a time
-- (reads skip any that remain; the key expires when publishes stop).
-- Reading the front costs more than the rest of a publish: callers run
-- it every 16th seq.
local function trim_age(history, now, age)
  local front = redis.call('XRANGE', history, '-', '+', 'COUNT', 16)
  local cut = nil
  for _, e in ipairs(front) do
    if now - tonumber(e[2][4]) > age then cut = e[1] else break end
  end
  if cut then
    local s = tonumber(string.match(cut, '^(%d+)'))
    redis.call('XTRIM', history, 'MINID', (s + 1) .. '-0')
  end
end
"#
    };
}

/// Redis's clock in ms: one clock for every node.
macro_rules! lua_clock {
    () => {
        r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#
    };
}

/// Functions the membership scripts start with.
macro_rules! lua_members {
    () => {
        r#"
-- Take `count` connections of `user` off `topic`'s members (prefix `p`):
-- `l` on the topic's channel if that was the last of them.
local function leave(p, topic, user, count, ts)
  local pk = p .. 'p:' .. topic
  local n = redis.call('HINCRBY', pk, user, -count)
  if n <= 0 then
    local uk = p .. 'u:' .. topic
    redis.call('HDEL', pk, user)
    redis.call('ZREM', uk, user)
    local left = redis.call('ZCARD', uk)
    redis.call('PUBLISH', p .. 'c:' .. topic, 'l' .. ts .. ',' .. left .. ',' .. user)
  end
end
-- A node's share field `{topic}\x1f{user}` split in two.
local function split_field(f)
  local sep = string.find(f, '\31', 1, true)
  if not sep then return nil end
  return string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
end
"#
    };
}

/// `publish`: number a delivery, keep it in history, send it to the nodes.
///
/// KEYS: meta, history, idempotency key. ARGV: channel, epoch for a new
/// topic, head, tail, tag, history length, history age (ms), meta
/// time-to-live (ms), `1` if the idempotency key is used, its window (ms),
/// the topic. Returns `{seq, epoch, duplicate (0/1), topic}`.
///
/// With a key: a publish whose key was used within the window is not
/// stored again; the original's receipt comes back (`duplicate` 1), on
/// whichever node the retry arrives.
///
/// The delivery is `head .. seq .. ,"epoch":"E" .. tail` (see
/// `Delivery::parts`): the node encodes it once and Redis only adds the
/// two numbers it owns. A topic without a meta hash (new, or lost with
/// Redis's data) starts a new epoch and an empty history.
const PUBLISH: &str = concat!(
    lua_clock!(),
    lua_topic!(),
    r#"
if ARGV[9] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local s, e, t = string.match(prev, '^(%d+)\31([^\31]*)\31(.*)$')
    if s then return {tonumber(s), e, 1, t} end
  end
end
local epoch = topic_epoch(KEYS[1], KEYS[2], ARGV[2], nil)
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local msg = ARGV[3] .. seq .. ',"epoch":"' .. epoch .. '"' .. ARGV[4]
local maxlen = tonumber(ARGV[6])
if maxlen > 0 then
  local now = now_ms()
  local age = tonumber(ARGV[7])
  redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, seq .. '-0', 'd', msg, 't', now, 'o', ARGV[5])
  if seq % 16 == 0 then trim_age(KEYS[2], now, age) end
  redis.call('PEXPIRE', KEYS[2], age)
end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PUBLISH', ARGV[1], 'd' .. seq .. ',' .. epoch .. ',' .. ARGV[5] .. ',' .. msg)
if ARGV[9] == '1' then
  redis.call('SET', KEYS[3], seq .. '\31' .. epoch .. '\31' .. ARGV[11], 'PX', ARGV[10])
end
return {seq, epoch, 0, ARGV[11]}
"#
);

/// `ack`: a user processed a topic up to a position (cumulative).
///
/// KEYS: the user's session hash. ARGV: topic, epoch, seq, session
/// time-to-live (ms), most topics per user. Returns 1 (stored, or an
/// older position of the same epoch left as it was) or 0 (the user keeps
/// as many positions as allowed). Each ack renews the session's life.
const ACK: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local e, s = string.match(cur, '^(.*)\31(%d+)$')
  if e == ARGV[2] and tonumber(s) >= tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return 1
  end
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// `publish_batch`: `n` publishes of one topic (none with an idempotency
/// key) in one run: numbered `first..first+n-1` together, each kept in
/// history, and sent to the nodes as one channel message
/// (`b{first},{epoch},{n}` then `,{tag},{length}:{delivery}` each).
///
/// KEYS: meta, history. ARGV: channel, epoch for a new topic, history
/// length, history age (ms), meta time-to-live (ms), `n`, then `n` times
/// head, tail, tag. Returns `{first, epoch}`.
///
/// The same as `n` runs of `publish`, for the price of one: the call, the
/// epoch, the clock, the time-to-live updates and the `PUBLISH` are paid
/// once per batch.
const PUBLISH_BATCH: &str = concat!(
    lua_clock!(),
    lua_topic!(),
    r#"
local epoch = topic_epoch(KEYS[1], KEYS[2], ARGV[2], nil)
local n = tonumber(ARGV[6])
local last = redis.call('HINCRBY', KEYS[1], 's', n)
local first = last - n + 1
local maxlen = tonumber(ARGV[3])
local now = 0
if maxlen > 0 then now = now_ms() end
local out = {'b' .. first .. ',' .. epoch .. ',' .. n}
for i = 0, n - 1 do
  local seq = first + i
  local tag = ARGV[9 + 3 * i]
  local msg = ARGV[7 + 3 * i] .. seq .. ',"epoch":"' .. epoch .. '"' .. ARGV[8 + 3 * i]
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', maxlen, seq .. '-0', 'd', msg, 't', now, 'o', tag)
  end
  out[#out + 1] = ',' .. tag .. ',' .. #msg .. ':' .. msg
end
if maxlen > 0 then
  local age = tonumber(ARGV[4])
  -- As `publish`: once per batch that passes a 16th seq.
  if math.floor(last / 16) ~= math.floor((first - 1) / 16) then trim_age(KEYS[2], now, age) end
  redis.call('PEXPIRE', KEYS[2], age)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], table.concat(out))
return {first, epoch}
"#
);

/// `attach`: where a topic stands (created with a new epoch if unknown).
///
/// KEYS: meta, history. ARGV: epoch for a new topic, meta time-to-live.
/// Returns `{epoch, seq}`.
const ATTACH: &str = concat!(
    lua_topic!(),
    r#"
local epoch = topic_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {epoch, tonumber(redis.call('HGET', KEYS[1], 's'))}
"#
);

/// `fetch`: a topic's position and its history after a seq (created with
/// a new epoch if unknown, as `attach` does).
///
/// KEYS: meta, history. ARGV: after, most entries, history age (ms),
/// epoch for a new topic, meta time-to-live (ms). Returns
/// `{epoch, seq, {seq, time, delivery, tag, ...}}`: entries after
/// `after`, oldest first, those past the age limit left out.
const FETCH: &str = concat!(
    lua_clock!(),
    lua_topic!(),
    r#"
local epoch = topic_epoch(KEYS[1], KEYS[2], ARGV[4], ARGV[5])
local seq = tonumber(redis.call('HGET', KEYS[1], 's'))
local now = now_ms()
local age = tonumber(ARGV[3])
local out = {}
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
for _, e in ipairs(entries) do
  local f = e[2]
  if now - tonumber(f[4]) <= age then
    out[#out + 1] = tonumber(string.match(e[1], '^(%d+)'))
    out[#out + 1] = tonumber(f[4])
    out[#out + 1] = f[2]
    out[#out + 1] = f[6]
  end
end
return {epoch, seq, out}
"#
);

/// `presence`: a connection of `user` subscribed (+1) or left (-1).
///
/// KEYS: members, node members, member names. ARGV: user, delta,
/// node-member field, channel, wall-clock ms. Returns the user's
/// connections now. Sends `j` when that makes the user a member, `l` when
/// it ends the membership, each with the member count after it.
const PRESENCE: &str = r#"
local delta = tonumber(ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
local m = redis.call('HINCRBY', KEYS[2], ARGV[3], delta)
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if delta < 0 and n - delta > 0 then
    redis.call('ZREM', KEYS[3], ARGV[1])
    local c = redis.call('ZCARD', KEYS[3])
    redis.call('PUBLISH', ARGV[4], 'l' .. ARGV[5] .. ',' .. c .. ',' .. ARGV[1])
  end
  return 0
end
if n == delta then
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  local c = redis.call('ZCARD', KEYS[3])
  redis.call('PUBLISH', ARGV[4], 'j' .. ARGV[5] .. ',' .. c .. ',' .. ARGV[1])
end
return n
"#;

/// `members`: one page of a topic's members, by name.
///
/// KEYS: member names. ARGV: the last name of the previous page (empty:
/// from the start), most names. Returns `{count, {name, ...}}` with up to
/// one name more than asked (so the caller knows whether more follow).
const MEMBERS: &str = r#"
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local names = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
return {redis.call('ZCARD', KEYS[1]), names}
"#;

/// `heartbeat`: keep this node alive, and clear what dead nodes left.
///
/// KEYS: nodes. ARGV: this instance, time-to-live (ms), key prefix, most
/// fields cleared per dead node, wall-clock ms. Returns 1 if this node was
/// still listed (0: the others took it for dead and removed its members;
/// it must add them again).
///
/// A dead node's share of each topic's members is subtracted (`l` where a
/// user has no connection left), a bounded number per heartbeat; the node
/// leaves the set once nothing of it is left.
const HEARTBEAT: &str = concat!(
    lua_clock!(),
    lua_members!(),
    r#"
local now = now_ms()
local p = ARGV[3]
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 4)
for _, d in ipairs(dead) do
  local key = p .. 'n:' .. d
  local fields = redis.call('HSCAN', key, 0, 'COUNT', ARGV[4])[2]
  for i = 1, #fields, 2 do
    local topic, user = split_field(fields[i])
    if topic then leave(p, topic, user, tonumber(fields[i + 1]), ARGV[5]) end
    redis.call('HDEL', key, fields[i])
  end
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', KEYS[1], d) end
end
if was then return 1 end
return 0
"#
);

/// `goodbye`: this node leaves the cluster (graceful shutdown): its share
/// of the members is subtracted as the heartbeat does for a dead node.
///
/// KEYS: nodes. ARGV: this instance, key prefix, wall-clock ms.
const GOODBYE: &str = concat!(
    lua_members!(),
    r#"
local p = ARGV[2]
local key = p .. 'n:' .. ARGV[1]
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local topic, user = split_field(fields[i])
  if topic then leave(p, topic, user, tonumber(fields[i + 1]), ARGV[3]) end
end
redis.call('DEL', key)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#
);

/// Every script, loaded once per connection (`SCRIPT LOAD`) and run by
/// hash (`EVALSHA`).
pub struct Scripts {
    pub publish: Script,
    pub publish_batch: Script,
    pub ack: Script,
    pub attach: Script,
    pub fetch: Script,
    pub presence: Script,
    pub members: Script,
    pub heartbeat: Script,
    pub goodbye: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            publish: Script::new(PUBLISH),
            publish_batch: Script::new(PUBLISH_BATCH),
            ack: Script::new(ACK),
            attach: Script::new(ATTACH),
            fetch: Script::new(FETCH),
            presence: Script::new(PRESENCE),
            members: Script::new(MEMBERS),
            heartbeat: Script::new(HEARTBEAT),
            goodbye: Script::new(GOODBYE),
        }
    }

    /// All of them, to load after (re)connecting.
    pub fn all(&self) -> [&Script; 9] {
        [
            &self.publish,
            &self.publish_batch,
            &self.ack,
            &self.attach,
            &self.fetch,
            &self.presence,
            &self.members,
            &self.heartbeat,
            &self.goodbye,
        ]
    }
}
