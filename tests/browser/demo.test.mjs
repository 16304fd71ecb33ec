// End-to-end test of the demo chat page in a real headless Chromium.
//
// Starts the release `wsmio serve` binary on a free 127.0.0.1 port, opens the
// page twice (two isolated browsers, each with its own fresh temporary
// profile), and checks connect, permessage-deflate negotiated (the page's
// WebSocket.extensions), presence, a chat message going both ways,
// presence dropping when a page closes, /healthz, /metrics and a graceful
// SIGTERM shutdown (exit code 0 within 10 s). cluster.test.mjs does the same
// across two nodes over Redis.
//
// Run with tests/browser/run.sh, or after `npm ci` here and
// `cargo build --release --features cli --bin wsmio`:  node --test tests/browser/
// (environment: see helpers.mjs; WSMIO_E2E_KEEP_LOG=1 prints the hub's log
// even when everything passed).

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants, mkdtempSync } from 'node:fs';
import path from 'node:path';
import {
  CHROMIUM, FILE_TIMEOUT, SHUTDOWN, STEP, WSMIO_BIN, closeClient, get, openClient,
  startHub, waitConnected, waitMembers, waitMessage, waitSystemLine, within, steps,
} from './helpers.mjs';

const ROOM = 'e2e';

// ---------------------------------------------------------------- the test

describe('demo page in headless Chromium', { timeout: FILE_TIMEOUT }, () => {
  let hub = null;
  let a = null;
  let b = null;
  const s = steps();
  const step = s.step;
  const pageErrors = [];
  const url = () => `${hub.base}/?room=${ROOM}`;


  before(() => s.guard(setUp));

  async function setUp() {
    try {
      accessSync(WSMIO_BIN, constants.X_OK);
    } catch {
      throw new Error(`no hub binary at ${WSMIO_BIN}: run cargo build --release --features cli --bin wsmio`);
    }
    try {
      accessSync(CHROMIUM, constants.X_OK);
    } catch {
      throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    }
    hub = await startHub();
    // Backstop: whatever happens, the hub does not outlive this process.
    process.once('exit', () => hub.kill());
    // Both browsers start in parallel: that is most of the run time. Keep
    // whichever started so that after() closes it even if the other failed.
    const [ra, rb] = await Promise.allSettled([
      openClient('A', url(), pageErrors),
      openClient('B', url(), pageErrors),
    ]);
    a = ra.status === 'fulfilled' ? ra.value : null;
    b = rb.status === 'fulfilled' ? rb.value : null;
    for (const r of [ra, rb]) if (r.status === 'rejected') throw r.reason;
  }

  after(async () => {
    await closeClient(b);
    await closeClient(a);
    if (hub) {
      hub.kill();
      await within(SHUTDOWN, hub.exited, 'hub exit after SIGKILL').catch(() => {});
      if (s.showLogs) {
        console.log(`----- wsmio hub log (port ${hub.port}) -----\n${hub.log}-----`);
      }
    }
  });

  step('both pages connect', async () => {
    await Promise.all([waitConnected(a), waitConnected(b)]);
    assert.notEqual(a.user, b.user, 'two anonymous connections got the same user id');
    for (const c of [a, b]) {
      assert.equal(await c.page.locator('#room').inputValue(), ROOM, `${c.name}: #room`);
      assert.equal(await c.page.title(), 'wsmio chat');
    }
  });

  step('the hub negotiates permessage-deflate with the browser', async () => {
    // RFC 7692: Chromium offers it on every connection; the hub accepts it
    // by default (--deflate on).
    for (const c of [a, b]) {
      const ext = await c.page.evaluate(() => demo.hub.ws.extensions);
      assert.match(ext, /^permessage-deflate\b/, `${c.name}: WebSocket.extensions = ${JSON.stringify(ext)}`);
    }
  });

  step('presence shows 2 members on both pages', async () => {
    await Promise.all([waitMembers(a, [a.user, b.user]), waitMembers(b, [a.user, b.user])]);
    for (const c of [a, b]) {
      assert.equal(await c.page.locator('#count').textContent(), '2');
      assert.equal(await c.page.locator('#members li.me').textContent(), c.user, `${c.name}: own entry`);
    }
  });

  step('a page that lost its connection before any message gets what was sent meanwhile', async () => {
    // B has seen no message in the room yet: it resumes from the position
    // the subscribe ack gave it.
    await b.page.evaluate(() => demo.hub.ws.close());
    await b.page.waitForFunction(
      () => document.getElementById('status').textContent.startsWith('disconnected'),
      null,
      { timeout: STEP },
    );
    // Published while B is away (it reconnects after 250-500 ms).
    const text = `while you were away ${Date.now()}`;
    await a.page.evaluate((text) => demo.hub.publish(demo.room, { text }), text);
    await waitConnected(b);
    const got = await waitMessage(b, a.user, text);
    assert.match(got.seq, /^#\d+$/);
    await waitSystemLine(b, 'resumed: 1 missed message(s) recovered');
    // B is a new anonymous user now: both pages show the new membership.
    await Promise.all([waitMembers(a, [a.user, b.user]), waitMembers(b, [a.user, b.user])]);
  });

  step('a message typed in A appears in B and in A', async () => {
    // HTML-ish text and non-ASCII: the page must show it as text, not markup.
    const text = `hello <b>e2e</b> & "friends" ✓ ${process.pid}-${Date.now()}`;
    const input = a.page.locator('#input');
    await input.click();
    await input.pressSequentially(text);
    await a.page.locator('#send').click();

    // A first: if the hub refused the publish, A's page shows the error line.
    const inA = await waitMessage(a, a.user, text);
    const inB = await waitMessage(b, a.user, text);
    assert.match(inB.seq, /^#\d+$/, 'B: sequence number shown');
    assert.equal(inB.seq, inA.seq, 'A and B show the same sequence number');
    assert.equal(inB.text, `${a.user}${text}${inB.seq}`);
    // The form was cleared after sending.
    assert.equal(await input.inputValue(), '');
    // Escaped: no <b> element was created from the message text.
    for (const c of [a, b]) {
      assert.equal(await c.page.locator('#messages b').count(), 0, `${c.name}: message rendered as HTML`);
    }
  });

  step('closing page B drops presence on A to 1', async () => {
    await within(STEP, b.page.close(), 'closing page B');
    await waitMembers(a, [a.user]);
    await waitSystemLine(a, `${b.user} left`);
    assert.equal(await a.page.locator('#count').textContent(), '1');
  });

  step('screenshot of page A', async (t) => {
    const dir = mkdtempSync(path.join('/tmp', 'wsmio-e2e-shot-'));
    const file = path.join(dir, 'demo-page-A.png');
    await a.page.screenshot({ path: file, fullPage: true, timeout: STEP });
    t.diagnostic(`screenshot: ${file}`);
    console.log(`screenshot of page A: ${file}`);
  });

  step('GET /healthz and /metrics', async () => {
    const health = await get(`${hub.base}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.trim(), 'ok');

    const metrics = await get(`${hub.base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.ok(metrics.body.includes('wsmio_connections_total'), 'metrics lack wsmio_connections_total');
    const m = /^wsmio_connections_total(?:\{[^}]*\})? (\d+)/m.exec(metrics.body);
    assert.ok(m, 'wsmio_connections_total has no sample line');
    assert.ok(Number(m[1]) >= 2, `wsmio_connections_total = ${m[1]}, expected >= 2`);
    // The chat's deliveries (over --deflate-threshold) went out compressed,
    // each compressed once and shared by both pages.
    const sample = (name) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(metrics.body)?.[1] ?? 0);
    assert.ok(sample('wsmio_deflate_sent_shared_total') >= 2, `no shared compressed delivery: ${metrics.body}`);
    assert.ok(
      sample('wsmio_deflate_bytes_after_total') < sample('wsmio_deflate_bytes_before_total'),
      'compression did not shrink the deliveries',
    );
    // The page acknowledges what it has shown (once a second at most).
    const deadline = Date.now() + STEP;
    for (;;) {
      const body = (await get(`${hub.base}/metrics`)).body;
      const acks = Number(/^wsmio_acks_total (\d+)/m.exec(body)?.[1] ?? 0);
      if (acks >= 1) break;
      assert.ok(Date.now() < deadline, `the page sent no ack: ${body}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  step('no JavaScript errors on the pages', () => {
    assert.deepEqual(pageErrors, []);
  });

  step('SIGTERM: graceful shutdown, exit code 0 within 10 s', async () => {
    assert.equal(hub.exit, null, `hub already exited: ${JSON.stringify(hub.exit)}`);
    const t0 = Date.now();
    process.kill(hub.child.pid, 'SIGTERM');
    const exit = await within(SHUTDOWN, hub.exited, 'hub exit after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `hub exit after SIGTERM (${Date.now() - t0} ms)`);
    // Page A, still connected, was told why (close 1001 "going away").
    await a.page.waitForFunction(
      () => document.getElementById('status').textContent.startsWith('disconnected (1001'),
      null,
      { timeout: STEP },
    );
  });
});
