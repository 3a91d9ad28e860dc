// @amplitude/analytics-node -> sluice (POST /2/httpapi, api_key in the body).
// Its timer-driven sends retry; an explicit flush() never does, so the test
// lets the timer deliver and flushes only at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as amplitude from '@amplitude/analytics-node';
import { BURST, BURST_USERS, BURST_DAY, startSluice, checkAggregates, waitFor } from './lib/harness.mjs';

test('amplitude: tracks, identify and a 500-event burst arrive once despite lost acks', async (t) => {
  const sluice = await startSluice({ keys: { AMPLITUDE_API_KEY_test: 'amplitude' }, failFirst: 2 });
  t.after(() => sluice.stop());
  const client = amplitude.createInstance();
  await client.init('AMPLITUDE_API_KEY_test', {
    serverUrl: `${sluice.url}/2/httpapi`, flushIntervalMillis: 200, flushQueueSize: 100,
    logLevel: amplitude.Types.LogLevel.None,
  }).promise;
  const results = [];
  const track = (...args) => results.push(client.track(...args).promise);
  for (let i = 0; i < 3; i++) {
    track('Order Completed', { order_id: `o-${i}` }, { user_id: 'amp-user-1', device_id: 'amp-device-1' });
  }
  const identify = new amplitude.Identify().set('email', 'ada@example.com').set('plan', 'pro');
  results.push(client.identify(identify, { user_id: 'amp-user-1' }).promise);
  for (let i = 0; i < BURST; i++) {
    track('Burst Event', { i }, { user_id: `burst-user-${i % BURST_USERS}`, time: BURST_DAY + i });
  }
  const settled = await waitFor('amplitude deliveries', async () => {
    const all = await Promise.race([Promise.all(results), new Promise((r) => setTimeout(r, 100))]);
    return all;
  }, 90000);
  const failed = settled.filter((r) => r.code !== 200);
  assert.deepEqual(failed.map((r) => r.message), []);
  await client.flush().promise;
  await checkAggregates(t, sluice, {
    userId: 'amp-user-1', identifyEvent: '$identify', tracks: 3,
    traits: { email: 'ada@example.com', plan: 'pro' },
  });
});
