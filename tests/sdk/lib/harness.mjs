// Starts a real `sluice serve` for one SDK test and reads its aggregates back.
//
// Env: SLUICE_BIN (required): the sluice binary. SLUICE_SDK_KEEP=1 keeps the temp dir.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BURST = 500;
export const BURST_USERS = 5;
// Every burst event is dated on this day, so /v1/counters shows whether the
// SDK's timestamp reached sluice (receive time would land elsewhere).
export const BURST_DAY = Date.UTC(2024, 0, 1);

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `fn` until it returns a truthy value or `timeoutMs` passes.
export async function waitFor(what, fn, timeoutMs = 60000, pollMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(pollMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// keys: { writeKey: project }. failFirst: the first N accepted requests are
// committed and then answered 503 (the acknowledgement is "lost"), so the
// SDK's retry has to be deduplicated.
export async function startSluice({ keys, failFirst = 0 }) {
  const bin = process.env.SLUICE_BIN;
  if (!bin) throw new Error('SLUICE_BIN must name the sluice binary');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-sdk-'));
  const port = await freePort();
  const lines = [
    '[server]',
    `listen = "127.0.0.1:${port}"`,
    '[store]',
    `url = "sqlite:${dir}/sluice.db"`,
    '[ingest]',
    `fail_first_requests = ${failFirst}`,
    'fail_after_commit = true',
    'retry_after_s = 1',
    '[watcher]',
    'batch = 200',
    '[auth.write_keys]',
    ...Object.entries(keys).map(([k, p]) => `"${k}" = "${p}"`),
  ];
  writeFileSync(path.join(dir, 'sluice.toml'), lines.join('\n') + '\n');
  const log = [];
  const proc = spawn(bin, ['serve', '--config', path.join(dir, 'sluice.toml')], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => log.push(d.toString()));
  proc.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor('sluice /readyz', async () => {
      if (exited) throw new Error(`sluice exited ${JSON.stringify(exited)}:\n${log.join('')}`);
      try {
        return (await fetch(`${url}/readyz`)).status === 200;
      } catch {
        return false;
      }
    }, 30000);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }

  const readKey = Object.keys(keys)[0];
  async function getJson(p) {
    const res = await fetch(url + p, { headers: { authorization: `Bearer ${readKey}` } });
    return { status: res.status, body: await res.json() };
  }

  return {
    url,
    port,
    log,
    getJson,
    async user(id) {
      const r = await getJson(`/v1/users/${encodeURIComponent(id)}`);
      return r.status === 200 ? r.body : null;
    },
    // Sum of counts and max distinct users over the day buckets of [from, to).
    async counter(event, from, to) {
      const q = `event=${encodeURIComponent(event)}&bucket=day&from=${from}&to=${to}`;
      const r = await getJson(`/v1/counters?${q}`);
      if (r.status !== 200) throw new Error(`counters: ${r.status} ${JSON.stringify(r.body)}`);
      let count = 0;
      let users = 0;
      for (const p of r.body.series) {
        count += p.count;
        users = Math.max(users, p.users);
      }
      return { count, users };
    },
    // Events the ingest path recognised as duplicates (sluice_ingest_events_total).
    async duplicates() {
      const text = await (await fetch(`${url}/metrics`)).text();
      const m = text.match(/^sluice_ingest_events_total\{result="duplicate"\} (\d+)/m);
      return m ? Number(m[1]) : 0;
    },
    // Waits until every committed event has been processed (nothing pending or leased).
    async drained() {
      await waitFor('queue drained', async () => {
        const r = await fetch(`${url}/admin/status`);
        if (r.status !== 200) return false;
        const s = await r.json();
        return s.queue.pending === 0 && s.queue.leased === 0 && s.queue.dead === 0;
      });
    },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        await waitFor('sluice exit', async () => exited !== null, 30000).catch(() => {
          proc.kill('SIGKILL');
        });
      }
      if (process.env.SLUICE_SDK_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The checks every SDK test makes once its client has flushed:
// - the tracked user has exactly `tracks` "Order Completed" + 1 identify, with the traits;
// - the burst shows exactly BURST events over BURST_USERS users on BURST_DAY;
// - every burst user has exactly BURST / BURST_USERS events.
// - when the SDK resent something sluice had stored (`resent`), sluice saw duplicates.
export async function checkAggregates(t, sluice, { userId, identifyEvent, traits, tracks, resent = true }) {
  const assert = (await import('node:assert/strict')).default;
  // Wait for the counts, then for the queue to drain, then check exactly:
  // a duplicate would push a count over, not just reach it.
  await waitFor('burst counted', async () =>
    (await sluice.counter('Burst Event', BURST_DAY, BURST_DAY + 86400000)).count >= BURST);
  await sluice.drained();
  const burst = await sluice.counter('Burst Event', BURST_DAY, BURST_DAY + 86400000);
  assert.deepEqual(burst, { count: BURST, users: BURST_USERS });
  for (let u = 0; u < BURST_USERS; u++) {
    const profile = await sluice.user(`burst-user-${u}`);
    assert.ok(profile, `burst-user-${u} has a profile`);
    assert.equal(profile.events, BURST / BURST_USERS, `burst-user-${u} events`);
  }
  const user = await sluice.user(userId);
  assert.ok(user, `${userId} has a profile`);
  assert.equal(user.event_counts['Order Completed'], tracks);
  assert.equal(user.event_counts[identifyEvent], 1);
  assert.equal(user.events, tracks + 1);
  for (const [k, v] of Object.entries(traits)) {
    assert.deepEqual(user.properties[k], v, `user property ${k}`);
  }
  const dups = await sluice.duplicates();
  if (resent) assert.ok(dups > 0, 'the SDK resent events after a lost ack and sluice deduplicated them');
  t.diagnostic(`duplicates dropped: ${dups}; user ${userId}: ${JSON.stringify(user)}`);
}
