// The hub's browser client (/wsmio.js) in real headless Chromium:
// - the demo page (built on it) survives a hub restart: what was typed
//   while the hub was down is sent once it is back, and every page shows
//   each message exactly once;
// - an expired token makes the client ask its token() callback for a
//   fresh one and reconnect; the publish the expiry interrupted is stored
//   once (idempotency key);
// - a refused token stops the client (HTTP 401 seen through the probe)
//   instead of retrying forever;
// - a room past --presence-events-max shows the count alone, and its
//   member list again once it is back under the cap.
// (Environment: see helpers.mjs.)

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  FILE_TIMEOUT, Hub, SHUTDOWN, STARTUP, STEP, closeClient, freePort, openClient, waitConnected,
  waitMembers, waitMessage, within, steps,
} from './helpers.mjs';

const SECRET = 'browser-client-test-secret-0123456789';

/** An HS256 token for `user` that expires in `ttl` seconds. */
function token(user, ttl) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({
    sub: user, exp: now + ttl, subscribe: ['*'], publish: ['*'], dm: ['*'],
  })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** Start a hub on `port` (the same port again after a restart). */
async function hubOn(port, args = []) {
  const h = new Hub(port, args);
  if (!(await h.ready(Date.now() + STARTUP))) throw new Error(`hub on ${port} did not start\n${h.log}`);
  return h;
}

/** How many chat lines contain `text`. */
const count = (c, text) =>
  c.page.evaluate((t) => [...document.querySelectorAll('#messages li')].filter((li) => li.textContent.includes(t)).length, text);

describe('the browser client /wsmio.js', { timeout: FILE_TIMEOUT * 2 }, () => {
  const hubs = [];
  const clients = [];
  const s = steps();
  const step = s.step;
  const errors = [];

  before(() => process.once('exit', () => hubs.forEach((h) => h.kill())));

  after(async () => {
    for (const c of clients) await closeClient(c);
    for (const h of hubs) {
      h.kill();
      await within(SHUTDOWN, h.exited, 'hub exit').catch(() => {});
      if (s.showLogs) console.log(`----- hub log (port ${h.port}) -----\n${h.log}-----`);
    }
  });

  step('the demo page survives a hub restart; what was typed meanwhile arrives once, everywhere', async () => {
    const port = await freePort();
    let hub = await hubOn(port);
    hubs.push(hub);
    const url = `${hub.base}/?room=restart`;
    const [a, b] = await Promise.all([openClient('A', url, errors), openClient('B', url, errors)]);
    clients.push(a, b);
    await Promise.all([waitConnected(a), waitConnected(b)]);
    const before = `before the restart ${Date.now()}`;
    await a.page.evaluate((t) => demo.hub.publish(demo.room, { text: t }), before);
    await Promise.all([waitMessage(a, a.user, before), waitMessage(b, a.user, before)]);

    // The hub goes away; A types while it is gone.
    process.kill(hub.child.pid, 'SIGTERM');
    await within(SHUTDOWN, hub.exited, 'hub exit after SIGTERM');
    for (const c of [a, b]) {
      await c.page.waitForFunction(() => !document.getElementById('status').classList.contains('open'), null, { timeout: STEP });
    }
    const during = `typed while the hub was down ${Date.now()}`;
    const input = a.page.locator('#input');
    await input.click();
    await input.pressSequentially(during);
    await a.page.locator('#send').click();

    // Back on the same port (a new epoch: the memory engine).
    hub = await hubOn(port);
    hubs.push(hub);
    await Promise.all([waitConnected(a), waitConnected(b)]);
    const userA = (await a.page.locator('#me').textContent()).replace(/^you are /, '');
    await Promise.all([waitMessage(a, userA, during), waitMessage(b, userA, during)]);
    // Once each, and the old message not replayed again.
    await new Promise((r) => setTimeout(r, 1500));
    for (const c of [a, b]) {
      assert.equal(await count(c, during), 1, `${c.name}: "${during}"`);
      assert.equal(await count(c, before), 1, `${c.name}: "${before}"`);
    }
  });

  step('an expired token is refreshed through token(); the interrupted publish is stored once', async () => {
    const port = await freePort();
    const hub = await hubOn(port, ['--auth-secret', SECRET]);
    hubs.push(hub);
    const c = await openClient('T', `${hub.base}/?token=${token('watcher', 3600)}`, errors);
    clients.push(c);
    await waitConnected(c);
    // Tokens handed to the page: the first expires in 2 s.
    const tokens = [token('alice', 2), token('alice', 3600), token('alice', 3600)];
    const result = await c.page.evaluate(async ({ tokens }) => {
      const { Hub } = await import('/wsmio.js');
      const asked = [];
      const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
      const hub = new Hub(url, { token: () => { asked.push(Date.now()); return tokens[asked.length - 1]; } });
      const seen = [];
      hub.subscribe('refresh', { onMessage: (m) => seen.push(m.data) });
      await new Promise((r) => hub.on('welcome', r));
      await hub.publish('refresh', 'one');
      await new Promise((r) => setTimeout(r, 2500)); // the token expires
      const ack = await hub.publish('refresh', 'two'); // closed 1008, refreshed, sent again
      await new Promise((r) => setTimeout(r, 500));
      hub.close();
      return { asked: asked.length, seq: ack.seq, seen };
    }, { tokens });
    assert.ok(result.asked >= 2, `token() asked ${result.asked} times`);
    assert.equal(result.seq, 2, 'the interrupted publish got seq 2');
    assert.deepEqual(result.seen.filter((d) => d === 'two'), ['two'], `delivered once: ${JSON.stringify(result.seen)}`);
  });

  step('a refused token stops the client with the HTTP status', async () => {
    const hub = hubs[hubs.length - 1];
    const c = clients[clients.length - 1];
    const stopped = await c.page.evaluate(async () => {
      const { Hub } = await import('/wsmio.js');
      const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
      const hub = new Hub(url, { token: () => 'not-a-token', baseDelay: 50 });
      return new Promise((resolve) => hub.on('stopped', resolve));
    });
    assert.equal(stopped.code, 401, JSON.stringify(stopped));
    assert.match(stopped.reason, /401/);
    assert.ok(hub.log.includes('listening'));
  });

  step('a room past --presence-events-max shows its count alone, and its list again below it', async () => {
    const port = await freePort();
    const hub = await hubOn(port, ['--presence-events-max', '2']);
    hubs.push(hub);
    const url = `${hub.base}/?room=big`;
    const pages = await Promise.all(['P', 'Q', 'R'].map((n) => openClient(n, url, errors)));
    clients.push(...pages);
    await Promise.all(pages.map(waitConnected));
    // Three members, cap two: every page shows "3" and no names.
    for (const c of pages) {
      await c.page.waitForFunction(
        () => document.getElementById('count').textContent === '3' &&
          document.querySelectorAll('#members li').length === 0,
        null, { timeout: STEP },
      );
    }
    // One leaves: diffs again, and the pages read the list again.
    const gone = pages.pop();
    clients.splice(clients.indexOf(gone), 1);
    await closeClient(gone);
    await Promise.all(pages.map((c) => waitMembers(c, pages.map((p) => p.user))));
  });

  step('no JavaScript errors (besides the network errors these steps cause)', () => {
    // Chromium logs every refused connection (the hub was down) and the
    // 401 (the refused token) itself; those are expected here.
    const expected = /ERR_CONNECTION_REFUSED|status of 401|HTTP Authentication failed/;
    assert.deepEqual(errors.filter((e) => !expected.test(e)), []);
  });
});
