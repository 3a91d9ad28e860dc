// mixpanel (Node) -> sluice. The SDK never retries, so instead of injected
// failures the app-level resend of a whole batch shows that $insert_id dedups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Mixpanel from 'mixpanel';
import { BURST, BURST_USERS, BURST_DAY, startSluice, checkAggregates } from './lib/harness.mjs';

test('mixpanel: tracks, people.set and a 500-event batch arrive once, also when resent', async (t) => {
  const sluice = await startSluice({ keys: { MIXPANEL_TOKEN_test: 'mixpanel' } });
  t.after(() => sluice.stop());
  const mp = Mixpanel.init('MIXPANEL_TOKEN_test', {
    host: `127.0.0.1:${sluice.port}`, protocol: 'http', keepAlive: true,
  });
  const call = (fn) => new Promise((resolve) => fn((err) => resolve(err ?? null)));
  const errs = [];
  for (let i = 0; i < 3; i++) {
    errs.push(await call((cb) => mp.track('Order Completed',
      { distinct_id: 'mp-user-1', order_id: `o-${i}`, revenue: 42.5 }, cb)));
  }
  errs.push(await call((cb) => mp.people.set('mp-user-1',
    { email: 'ada@example.com', plan: 'pro' }, cb)));
  const burst = [];
  for (let i = 0; i < BURST; i++) {
    burst.push({
      event: 'Burst Event',
      properties: {
        distinct_id: `burst-user-${i % BURST_USERS}`, time: new Date(BURST_DAY + i), i,
        $insert_id: `mp-burst-${i}`, note: '>>>???>>>??? raw + and / in the base64',
      },
    });
  }
  const batchErr = await call((cb) => mp.track_batch(burst, cb));
  // Resent whole, as an app would after a timeout: stored once.
  const resendErr = await call((cb) => mp.track_batch(burst, cb));
  assert.deepEqual(errs, [null, null, null, null]);
  assert.ok(!batchErr || batchErr.length === 0, String(batchErr));
  assert.ok(!resendErr || resendErr.length === 0, String(resendErr));
  await checkAggregates(t, sluice, {
    userId: 'mp-user-1', identifyEvent: '$identify', tracks: 3,
    traits: { email: 'ada@example.com', plan: 'pro' },
  });
});
