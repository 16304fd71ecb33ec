// End-to-end test of the demo chat page in a real headless Chromium.
//
// Starts the release `wsmio serve` binary on a free 127.0.0.1 port, opens the
// page twice (two isolated browsers, each with its own fresh temporary
// profile), and checks connect, presence, a chat message going both ways,
// presence dropping when a page closes, /healthz, /metrics and a graceful
// SIGTERM shutdown (exit code 0 within 10 s).
//
// Run with tests/browser/run.sh, or after `npm ci` here and
// `cargo build --release --features cli --bin wsmio`:  node --test tests/browser/
//
// Environment:
//   WSMIO_BIN         the hub binary (default: $CARGO_TARGET_DIR or
//                     <repo>/target, then release/wsmio)
//   CHROMIUM_PATH     the Chromium executable (default /usr/bin/chromium)
//   WSMIO_E2E_KEEP_LOG=1  print the hub's log even when everything passed

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
  : path.join(REPO, 'target');
const WSMIO_BIN = process.env.WSMIO_BIN || path.join(TARGET, 'release', 'wsmio');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ROOM = 'e2e';

// Bounded waits: every step has one of these, the whole file has FILE_TIMEOUT.
const STEP = 15_000;
const STARTUP = 20_000;
const SHUTDOWN = 10_000;
const FILE_TIMEOUT = 90_000;

// ---------------------------------------------------------------- helpers

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with a message naming what was awaited. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function get(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

/** The hub, spawned as a child; `exited` settles with {code, signal}. */
class Hub {
  constructor(port) {
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.log = '';
    this.exit = null;
    this.child = spawn(WSMIO_BIN, ['serve', '--listen', `127.0.0.1:${port}`], {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk) => {
      this.log += chunk;
      if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
    };
    this.child.stdout.setEncoding('utf8').on('data', keep);
    this.child.stderr.setEncoding('utf8').on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  /** Poll /healthz until it answers "ok"; false if the process died first. */
  async ready(deadline) {
    while (Date.now() < deadline) {
      if (this.exit) return false;
      try {
        const { status, body } = await get(`${this.base}/healthz`);
        if (status === 200 && body.trim() === 'ok') return true;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`hub did not answer /healthz within ${STARTUP} ms\n${this.log}`);
  }

  /** SIGKILL by PID if it is still running (cleanup only). */
  kill() {
    if (!this.exit && this.child.pid) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** Start the hub on a free port; retry if another process took the port. */
async function startHub() {
  const deadline = Date.now() + STARTUP;
  for (let attempt = 1; ; attempt++) {
    const hub = new Hub(await freePort());
    if (await hub.ready(deadline)) return hub;
    const why = hub.exit.error ? hub.exit.error.message : `exit ${hub.exit.code}`;
    if (attempt >= 3 || hub.exit.error) {
      throw new Error(`hub failed to start (${why}): ${WSMIO_BIN}\n${hub.log}`);
    }
  }
}

/** One isolated browser with a fresh temporary profile, and its page. */
async function openClient(name, url, errors) {
  const profile = mkdtempSync(path.join(tmpdir(), `wsmio-e2e-${name}-`));
  // launchPersistentContext is the only way Playwright lets us choose the
  // --user-data-dir; two of them give two independent browser contexts.
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: STARTUP,
      viewport: { width: 1000, height: 640 },
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const c = { name, context, page: null, profile, user: null };
  context.setDefaultTimeout(STEP);
  const page = context.pages()[0] ?? (await context.newPage());
  c.page = page;
  page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    // Chromium asks for /favicon.ico by itself; the hub has none (404).
    if (m.type() === 'error' && !/\/favicon\.ico$/.test(m.location().url)) {
      errors.push(`${name}: console error: ${m.text()} (${m.location().url})`);
    }
  });
  try {
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: STEP });
  } catch (e) {
    await closeClient(c);
    throw e;
  }
  return c;
}

async function closeClient(c) {
  if (!c) return;
  try {
    await within(STEP, c.context.close(), `closing browser ${c.name}`);
  } catch {
    // a hung browser is killed with its process group by Playwright on exit
  }
  rmSync(c.profile, { recursive: true, force: true });
}

/** Wait until the page says it is connected and knows who it is. */
async function waitConnected(c) {
  await c.page.waitForFunction(
    () => {
      const s = document.getElementById('status');
      const me = document.getElementById('me').textContent;
      return s.textContent === 'connected' && s.classList.contains('open') && me.startsWith('you are ');
    },
    null,
    { timeout: STEP },
  );
  c.user = (await c.page.locator('#me').textContent()).replace(/^you are /, '');
  assert.match(c.user, /\S/, `${c.name}: empty user id`);
}

/** Wait until the page's presence shows exactly `users` (and the count). */
async function waitMembers(c, users) {
  const want = [...users].sort();
  try {
    await c.page.waitForFunction(
      (want) => {
        const items = [...document.querySelectorAll('#members li')].map((li) => li.textContent);
        return (
          document.getElementById('count').textContent === String(want.length) &&
          JSON.stringify(items.sort()) === JSON.stringify(want)
        );
      },
      want,
      { timeout: STEP },
    );
  } catch (e) {
    const count = await c.page.locator('#count').textContent();
    const items = await c.page.locator('#members li').allTextContents();
    throw new Error(
      `${c.name}: presence is count=${count} members=${JSON.stringify(items)}, ` +
        `wanted ${JSON.stringify(want)}: ${e.message}`,
    );
  }
}

/** The chat line from `from` containing `text`: {text, seq}, waiting for it. */
async function waitMessage(c, from, text) {
  try {
    const handle = await c.page.waitForFunction(
      ([from, text]) => {
        for (const li of document.querySelectorAll('#messages li')) {
          const f = li.querySelector('.from');
          if (f && f.textContent === from && li.textContent.includes(text)) {
            return { text: li.textContent, seq: li.querySelector('.seq')?.textContent ?? null };
          }
        }
        return null;
      },
      [from, text],
      { timeout: STEP },
    );
    return await handle.jsonValue();
  } catch (e) {
    const lines = await c.page.locator('#messages li').allTextContents();
    throw new Error(
      `${c.name}: no message from ${from} containing ${JSON.stringify(text)}; ` +
        `#messages shows ${JSON.stringify(lines)}: ${e.message}`,
    );
  }
}

/** Wait for a system (italic) line with exactly this text. */
async function waitSystemLine(c, line) {
  await c.page.waitForFunction(
    (line) => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === line),
    line,
    { timeout: STEP },
  );
}

// ---------------------------------------------------------------- the test

describe('demo page in headless Chromium', { timeout: FILE_TIMEOUT }, () => {
  let hub = null;
  let a = null;
  let b = null;
  let failed = false;
  const pageErrors = [];
  const url = () => `${hub.base}/?room=${ROOM}`;

  // Each step records failure so the hub's log is printed at the end.
  const step = (name, fn) =>
    it(name, { timeout: FILE_TIMEOUT }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        failed = true;
        throw e;
      }
    });

  before(async () => {
    try {
      await setUp();
    } catch (e) {
      failed = true;
      throw e;
    }
  });

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
      if (failed || process.env.WSMIO_E2E_KEEP_LOG) {
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
    await b.page.evaluate(() => ws.close());
    await b.page.waitForFunction(
      () => document.getElementById('status').textContent.startsWith('disconnected'),
      null,
      { timeout: STEP },
    );
    // Published while B is away (it reconnects after 250-500 ms).
    const text = `while you were away ${Date.now()}`;
    await a.page.evaluate((text) => send({ op: 'pub', id: nextId++, topic: room, data: { text } }), text);
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
