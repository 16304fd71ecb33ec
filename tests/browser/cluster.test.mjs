// The demo chat page across two hub nodes over Redis, in real headless
// Chromium: a redis-server of our own (free port, temp dir, AOF), two
// `wsmio serve --engine redis` nodes, page A on node 1 and page B on
// node 2. They see each other in presence, chat both ways with the same
// sequence numbers, and A sees B leave. (Environment: see helpers.mjs.)

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import {
  CHROMIUM, FILE_TIMEOUT, SHUTDOWN, STEP, WSMIO_BIN, closeClient, get, openClient,
  startHub, startRedis, waitConnected, waitMembers, waitMessage, waitSystemLine, within, steps,
} from './helpers.mjs';

const ROOM = 'e2e-cluster';

describe('demo page on two nodes over Redis', { timeout: FILE_TIMEOUT }, () => {
  let redis = null;
  const hubs = [];
  let a = null;
  let b = null;
  const s = steps();
  const step = s.step;
  const pageErrors = [];


  before(() => s.guard(setUp));

  async function setUp() {
    accessSync(WSMIO_BIN, constants.X_OK);
    accessSync(CHROMIUM, constants.X_OK);
    redis = await startRedis();
    process.once('exit', () => {
      for (const h of hubs) h.kill();
      redis.kill();
    });
    for (const node of ['one', 'two']) {
      hubs.push(await startHub(['--engine', 'redis', '--redis-url', redis.url, '--node', node]));
    }
    const [ra, rb] = await Promise.allSettled([
      openClient('A', `${hubs[0].base}/?room=${ROOM}`, pageErrors),
      openClient('B', `${hubs[1].base}/?room=${ROOM}`, pageErrors),
    ]);
    a = ra.status === 'fulfilled' ? ra.value : null;
    b = rb.status === 'fulfilled' ? rb.value : null;
    for (const r of [ra, rb]) if (r.status === 'rejected') throw r.reason;
  }

  after(async () => {
    await closeClient(b);
    await closeClient(a);
    for (const h of hubs) {
      h.kill();
      await within(SHUTDOWN, h.exited, 'hub exit after SIGKILL').catch(() => {});
      if (s.showLogs) {
        console.log(`----- wsmio hub log (port ${h.port}) -----\n${h.log}-----`);
      }
    }
    if (redis) redis.kill();
  });

  step('both nodes are ready and both pages connect', async () => {
    for (const h of hubs) {
      const r = await get(`${h.base}/readyz`);
      assert.equal(r.status, 200, `node on ${h.port}: /readyz ${r.status} ${r.body}`);
    }
    await Promise.all([waitConnected(a), waitConnected(b)]);
    assert.notEqual(a.user, b.user);
  });

  step('presence shows both members on both nodes', async () => {
    await Promise.all([waitMembers(a, [a.user, b.user]), waitMembers(b, [a.user, b.user])]);
  });

  step('a message typed on node one appears on node two, and back', async () => {
    const send = async (from, text) => {
      const input = from.page.locator('#input');
      await input.click();
      await input.pressSequentially(text);
      await from.page.locator('#send').click();
    };
    const t1 = `from node one ✓ ${Date.now()}`;
    await send(a, t1);
    const inA = await waitMessage(a, a.user, t1);
    const inB = await waitMessage(b, a.user, t1);
    assert.match(inB.seq, /^#\d+$/);
    assert.equal(inB.seq, inA.seq, 'one sequence number on both nodes');
    const t2 = `and back from node two ${Date.now()}`;
    await send(b, t2);
    const backA = await waitMessage(a, b.user, t2);
    const backB = await waitMessage(b, b.user, t2);
    assert.equal(backA.seq, backB.seq);
    assert.ok(Number(backA.seq.slice(1)) > Number(inA.seq.slice(1)), `${backA.seq} after ${inA.seq}`);
  });

  step('closing page B drops presence on node one to 1', async () => {
    await within(STEP, b.page.close(), 'closing page B');
    await waitMembers(a, [a.user]);
    await waitSystemLine(a, `${b.user} left`);
  });

  step('no JavaScript errors on the pages', () => {
    assert.deepEqual(pageErrors, []);
  });
});
