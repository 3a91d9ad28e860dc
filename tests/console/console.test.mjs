// The console in a real browser: Debian's chromium, headless, driven by
// puppeteer-core (pinned in package-lock.json), against two real
// `sluice serve` replicas on one SQLite file and a webhook receiver this
// test stops and starts.
//
// Proves: the page loads with no console errors and no request beyond the
// sluice origin; it shows both replicas; a consumer's backlog grows while its
// receiver is down (with the delay banner) and drains after; a dead letter
// is requeued from the page; the live tail shows an event sent during the
// test, whose `<script>` properties stay inert text; the login form of a
// replica with an admin token. Screenshots go to $SCREENSHOT_DIR.
//
// Env: SLUICE_BIN (required), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (default ./screenshots), SLUICE_CONSOLE_KEEP=1 keeps the temp dir.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import puppeteer from 'puppeteer-core';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 60000, pollMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(pollMs);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// The webhook's receiver: 200 for everything but events named "poison"
// while `rejectPoison` (400: a permanent error); stop() and start() take it
// down and bring it back on the same port.
function makeReceiver(port) {
  const r = { received: [], rejectPoison: true, server: null };
  r.start = () => new Promise((resolve, reject) => {
    r.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        let ev = {};
        try { ev = JSON.parse(body); } catch { /* counted as received anyway */ }
        if (ev.event === 'poison' && r.rejectPoison) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end('{"error":"poison rejected"}');
          return;
        }
        r.received.push(ev);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    r.server.on('error', reject);
    r.server.listen(port, '127.0.0.1', resolve);
  });
  r.stop = () => new Promise((resolve) => {
    r.server.closeAllConnections();
    r.server.close(() => resolve());
  });
  return r;
}

function replicaConfig({ dir, port, hookPort, adminToken }) {
  return [
    `replica_id = "replica-${port}"`,
    '[server]',
    `listen = "127.0.0.1:${port}"`,
    '[store]',
    `url = "sqlite:${dir}/sluice.db"`,
    'sync = false',
    '[watcher]',
    'batch = 50',
    'backoff_base = "1s"',
    'backoff_cap = "4s"',
    'jitter = 0',
    'max_attempts = 5',
    'replica_heartbeat = "1s"',
    '[console]',
    'refresh = "1s"',
    'cache = "500ms"',
    'delay_warning = "3s"',
    ...(adminToken ? ['[auth]', `admin_token = "${adminToken}"`] : []),
    '[[consumer]]',
    'type = "users"',
    '[[consumer]]',
    'type = "counters"',
    '[[consumer]]',
    'type = "webhook"',
    'name = "hook"',
    'bit = 2',
    `url = "http://127.0.0.1:${hookPort}/hook"`,
    `template = '{"event":"{{event}}","insert_id":"{{insert_id}}"}'`,
    'timeout = "2s"',
  ].join('\n') + '\n';
}

async function startReplica(opts) {
  const bin = process.env.SLUICE_BIN;
  const file = path.join(opts.dir, `replica-${opts.port}.toml`);
  writeFileSync(file, replicaConfig(opts));
  const log = [];
  const proc = spawn(bin, ['serve', '--config', file], { cwd: opts.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (d) => log.push(d.toString()));
  proc.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  const url = `http://127.0.0.1:${opts.port}`;
  await waitFor(`replica ${opts.port} ready`, async () => {
    if (exited) throw new Error(`sluice exited ${JSON.stringify(exited)}:\n${log.join('')}`);
    try { return (await fetch(`${url}/readyz`)).status === 200; } catch { return false; }
  });
  return {
    url,
    log,
    async stop() {
      if (exited) return;
      proc.kill('SIGTERM');
      await waitFor('replica exit', async () => exited !== null, 30000).catch(() => proc.kill('SIGKILL'));
    },
  };
}

async function send(url, events) {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events }),
  });
  assert.equal(res.status, 200, await res.text());
}

test('the console shows replicas, backlog, dead letters and the live tail in a real browser', async (t) => {
  assert.ok(process.env.SLUICE_BIN, 'SLUICE_BIN must name the sluice binary');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-'));
  const shots = process.env.SCREENSHOT_DIR || path.resolve('screenshots');
  mkdirSync(shots, { recursive: true });
  const [portA, portB, hookPort] = [await freePort(), await freePort(), await freePort()];
  const receiver = makeReceiver(hookPort);
  await receiver.start();
  const replicas = [];
  let browser = null;
  t.after(async () => {
    if (browser) await browser.close();
    for (const r of replicas) await r.stop();
    if (receiver.server.listening) await receiver.stop();
    if (process.env.SLUICE_CONSOLE_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  });
  const a = await startReplica({ dir, port: portA, hookPort });
  replicas.push(a);
  const b = await startReplica({ dir, port: portB, hookPort, adminToken: 'console-test-token' });
  replicas.push(b);

  // The flags this machine needs (its network is closed; without them
  // Chromium keeps trying to reach Google's services).
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: mkdtempSync(path.join(dir, 'chromium-')),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--window-size=1400,1800'],
    defaultViewport: { width: 1400, height: 1800 },
  });
  const page = await browser.newPage();
  const consoleErrors = [];
  const foreignRequests = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(`${a.url}/`)) foreignRequests.push(r.url());
  });
  await page.evaluateOnNewDocument(() => { window.__pwned = 0; });
  await page.goto(`${a.url}/console`, { waitUntil: 'load' });

  const text = (sel) => page.$eval(sel, (e) => e.textContent);
  const backlog = async () => {
    const cell = await page.$('tr[data-consumer="hook"] td.backlog');
    if (!cell) return -1;
    return Number((await cell.evaluate((e) => e.textContent)).replace(/[^0-9]/g, ''));
  };

  await t.test('both replicas are listed with their claim loops', async () => {
    await waitFor('two replica rows with loops', async () => page.$$eval('#replicas tbody tr[data-replica]',
      (rows) => rows.length === 2 && rows.every((r) => /\d+ \/ 2/.test(r.textContent))));
    const ids = await page.$$eval('#replicas tbody tr[data-replica]', (rows) => rows.map((r) => r.dataset.replica));
    assert.deepEqual(ids.sort(), [`replica-${portA}`, `replica-${portB}`].sort());
    assert.match(await text('#store'), /sqlite/);
    await page.screenshot({ path: path.join(shots, 'console-overview.png'), fullPage: true });
  });

  // The poison event goes first: it dies (max_attempts = 5) while the outage below runs.
  const poisonId = `poison-${Date.now()}`;
  await send(a.url, [{ event: 'poison', user_id: 'p1', insert_id: poisonId }]);

  await t.test('a consumer whose receiver is down shows a growing backlog and the delay banner', async () => {
    await receiver.stop();
    await send(a.url, Array.from({ length: 10 }, (_, i) => ({ event: 'outage', user_id: `u${i % 3}`, insert_id: `o1-${i}` })));
    const first = await waitFor('backlog of 10', async () => { const n = await backlog(); return n >= 10 ? n : 0; });
    await send(b.url, Array.from({ length: 25 }, (_, i) => ({ event: 'outage', user_id: `u${i % 3}`, insert_id: `o2-${i}` })));
    const second = await waitFor('backlog of 35', async () => { const n = await backlog(); return n >= 35 ? n : 0; });
    assert.ok(second > first, `backlog grew: ${first} -> ${second}`);
    await waitFor('delay banner', async () => page.$eval('#banner', (e) => !e.hidden && /hook/.test(e.textContent)));
    // The in-store consumers are not held up by the webhook.
    const users = await page.$eval('tr[data-consumer="users"] td.backlog', (e) => e.textContent);
    assert.equal(users.trim(), '0');
    await page.screenshot({ path: path.join(shots, 'console-receiver-down.png'), fullPage: true });
  });

  await t.test('the backlog drains once the receiver is back', async () => {
    await receiver.start();
    await waitFor('backlog drained', async () => (await backlog()) === 0, 60000);
    await waitFor('banner gone', async () => page.$eval('#banner', (e) => e.hidden));
    const outage = receiver.received.filter((e) => e.event === 'outage').map((e) => e.insert_id);
    assert.equal(new Set(outage).size, 35);
    await page.screenshot({ path: path.join(shots, 'console-drained.png'), fullPage: true });
  });

  await t.test('a dead letter is requeued from the page', async () => {
    await page.type('#dlq-error', 'poison rejected');
    await waitFor('the poison event in the dead letters', async () => {
      await page.click('#dlq-filter button[type=submit]');
      await sleep(300);
      return (await page.$$('#dlq tbody tr[data-seq]')).length === 1;
    }, 60000, 700);
    assert.match(await text('#dlq tbody tr[data-seq]'), /poison/);
    await page.screenshot({ path: path.join(shots, 'console-dead-letter.png'), fullPage: true });
    receiver.rejectPoison = false;  // the receiver was fixed
    await page.click('#dlq tbody tr[data-seq] input[type=checkbox]');
    await page.click('#dlq-requeue');
    await waitFor('requeued message', async () => /Requeued 1\./.test(await text('#dlq-message')));
    await waitFor('the poison event delivered', async () => receiver.received.some((e) => e.insert_id === poisonId));
    await waitFor('no dead letters left', async () => {
      await page.click('#dlq-filter button[type=submit]');
      await sleep(300);
      return (await page.$$('#dlq tbody tr[data-seq]')).length === 0;
    }, 30000, 700);
  });

  await t.test('the live tail shows an event sent now, its <script> text inert', async () => {
    const id = `xss-${Date.now()}`;
    const nasty = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
    await send(a.url, [{ event: 'tail_check', user_id: 'tail-user', insert_id: id, properties: { note: nasty } }]);
    const row = `#tail tbody tr[data-insert-id="${id}"]`;
    await waitFor('the event in the tail', async () => (await page.$(row)) !== null, 30000);
    assert.equal(await page.$eval(`${row} td:nth-child(3)`, (e) => e.textContent), 'tail_check');
    assert.ok((await page.$eval(`${row} td.props`, (e) => e.textContent)).includes('<script>window.__pwned = 1</script>'));
    assert.equal(await page.$$eval('#tail script, #tail img', (n) => n.length), 0);
    assert.equal(await page.evaluate(() => window.__pwned), 0);
    // The filter: another user's events stop showing.
    await page.type('#tail-user', 'someone-else');
    await page.click('#tail-filter button[type=submit]');
    await sleep(500);
    await send(a.url, [{ event: 'tail_check', user_id: 'tail-user', insert_id: `${id}-hidden` }]);
    await send(a.url, [{ event: 'tail_check', user_id: 'someone-else', insert_id: `${id}-shown` }]);
    await waitFor('the filtered event', async () => (await page.$(`#tail tbody tr[data-insert-id="${id}-shown"]`)) !== null);
    assert.equal(await page.$(`#tail tbody tr[data-insert-id="${id}-hidden"]`), null);
    await page.screenshot({ path: path.join(shots, 'console-tail.png'), fullPage: true });
  });

  await t.test('no console errors and no request beyond the sluice origin', async () => {
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(foreignRequests, []);
  });

  await t.test('a replica with an admin token shows the login form, then the console', async () => {
    const p2 = await browser.newPage();
    const errors = [];
    p2.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    p2.on('pageerror', (e) => errors.push(e.message));
    const r = await fetch(`${b.url}/admin/overview`);
    assert.equal(r.status, 401);
    await p2.goto(`${b.url}/console`, { waitUntil: 'load' });
    await p2.waitForSelector('#login:not([hidden])');
    await p2.type('#login-token', 'console-test-token');
    await p2.click('#login-form button[type=submit]');
    await p2.waitForSelector('#main:not([hidden])');
    await waitFor('replicas on the logged-in page', async () =>
      (await p2.$$('#replicas tbody tr[data-replica]')).length === 2);
    const cookies = await p2.cookies();
    const session = cookies.find((c) => c.name === 'sluice_console');
    assert.ok(session, 'the session cookie is set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await p2.evaluate(() => document.cookie), '');  // not readable by scripts
    await p2.screenshot({ path: path.join(shots, 'console-logged-in.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await p2.close();
  });
});
