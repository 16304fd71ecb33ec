// Helpers shared by the browser tests (demo.test.mjs, cluster.test.mjs):
// the hub and Redis as child processes on free ports, isolated headless
// Chromium browsers (each with a fresh temporary profile), and waits on
// what the demo page shows. Every wait is bounded.
//
// Environment:
//   WSMIO_BIN         the hub binary (default: $CARGO_TARGET_DIR or
//                     <repo>/target, then release/wsmio)
//   CHROMIUM_PATH     the Chromium executable (default /usr/bin/chromium)
//   REDIS_SERVER      redis-server (default: redis-server on the PATH)

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
  : path.join(REPO, 'target');
export const WSMIO_BIN = process.env.WSMIO_BIN || path.join(TARGET, 'release', 'wsmio');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';
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

// Bounded waits: every step has one of these, each file has FILE_TIMEOUT.
export const STEP = 15_000;
export const STARTUP = 20_000;
export const SHUTDOWN = 10_000;
export const FILE_TIMEOUT = 90_000;

// ---------------------------------------------------------------- helpers

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
export function freePort() {
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with a message naming what was awaited. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function get(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

/** The hub, spawned as a child; `exited` settles with {code, signal}. */
export class Hub {
  constructor(port, args = []) {
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.log = '';
    this.exit = null;
    this.child = spawn(WSMIO_BIN, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
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

/** Start the hub on a free port (with `args`); retry if another process took the port. */
export async function startHub(args = []) {
  const deadline = Date.now() + STARTUP;
  for (let attempt = 1; ; attempt++) {
    const hub = new Hub(await freePort(), args);
    if (await hub.ready(deadline)) return hub;
    const why = hub.exit.error ? hub.exit.error.message : `exit ${hub.exit.code}`;
    if (attempt >= 3 || hub.exit.error) {
      throw new Error(`hub failed to start (${why}): ${WSMIO_BIN}\n${hub.log}`);
    }
  }
}

/** One isolated browser with a fresh temporary profile, and its page. */
export async function openClient(name, url, errors) {
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

export async function closeClient(c) {
  if (!c) return;
  try {
    await within(STEP, c.context.close(), `closing browser ${c.name}`);
  } catch {
    // a hung browser is killed with its process group by Playwright on exit
  }
  rmSync(c.profile, { recursive: true, force: true });
}

/** Wait until the page says it is connected and knows who it is. */
export async function waitConnected(c) {
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
export async function waitMembers(c, users) {
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
export async function waitMessage(c, from, text) {
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
export async function waitSystemLine(c, line) {
  await c.page.waitForFunction(
    (line) => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === line),
    line,
    { timeout: STEP },
  );
}


/** A redis-server of our own on a free port, AOF on, in a temp dir. */
export class Redis {
  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}/0`;
    this.dir = mkdtempSync(path.join(tmpdir(), 'wsmio-e2e-redis-'));
    this.exit = null;
    this.child = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes',
        '--save', '', '--daemonize', 'no', '--protected-mode', 'no'],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => resolve((this.exit = { error: err })));
      this.child.once('exit', (code, signal) => resolve((this.exit = { code, signal })));
    });
  }

  /** Wait until it takes connections; throws if it died or never did. */
  async ready(deadline) {
    while (Date.now() < deadline) {
      if (this.exit) {
        throw new Error(`${REDIS_SERVER} exited: ${JSON.stringify(this.exit)} (apt-get install redis-server)`);
      }
      const up = await new Promise((resolve) => {
        const s = new (Socket)();
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
        s.connect(this.port, '127.0.0.1');
      });
      if (up) return;
      await sleep(50);
    }
    throw new Error(`${REDIS_SERVER} did not listen on ${this.port} within ${STARTUP} ms`);
  }

  /** SIGKILL by PID and remove its directory (cleanup). */
  kill() {
    if (!this.exit && this.child.pid) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start a redis-server of our own. */
export async function startRedis() {
  const r = new Redis(await freePort());
  await r.ready(Date.now() + STARTUP);
  return r;
}

/** Steps of a suite that remember whether one failed (so that `after`
 *  prints the servers' logs then): `s.step(name, fn)` is `it` with the
 *  file's timeout; `s.guard(fn)` runs set-up code the same way;
 *  `s.showLogs` says whether logs are wanted. */
export function steps(timeout = FILE_TIMEOUT) {
  const s = {
    failed: false,
    get showLogs() {
      return s.failed || Boolean(process.env.WSMIO_E2E_KEEP_LOG);
    },
    async guard(fn, ...args) {
      try {
        return await fn(...args);
      } catch (e) {
        s.failed = true;
        throw e;
      }
    },
    step(name, fn) {
      return it(name, { timeout }, (t) => s.guard(fn, t));
    },
  };
  return s;
}
