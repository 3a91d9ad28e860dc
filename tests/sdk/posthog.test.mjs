// posthog-node -> sluice (gzipped POST /batch/, api_key in the body).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostHog } from 'posthog-node';
import { BURST, BURST_USERS, BURST_DAY, startSluice, checkAggregates } from './lib/harness.mjs';

test('posthog: captures, identify and a 500-event burst arrive once despite lost acks', async (t) => {
  const sluice = await startSluice({ keys: { phc_POSTHOG_KEY_test: 'posthog' }, failFirst: 2 });
  t.after(() => sluice.stop());
  const client = new PostHog('phc_POSTHOG_KEY_test', {
    host: sluice.url, flushAt: 50, flushInterval: 200, fetchRetryDelay: 500,
  });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  for (let i = 0; i < 3; i++) {
    client.capture({
      distinctId: 'ph-user-1', event: 'Order Completed', properties: { order_id: `o-${i}` },
    });
  }
  client.identify({
    distinctId: 'ph-user-1',
    properties: { $set: { email: 'ada@example.com', plan: 'pro' }, $set_once: { first: 'x' } },
  });
  for (let i = 0; i < BURST; i++) {
    client.capture({
      distinctId: `burst-user-${i % BURST_USERS}`, event: 'Burst Event', properties: { i },
      timestamp: new Date(BURST_DAY + i),
    });
  }
  await client.shutdown(60000);
  assert.deepEqual(errors, []);
  await checkAggregates(t, sluice, {
    userId: 'ph-user-1', identifyEvent: '$identify', tracks: 3,
    traits: { email: 'ada@example.com', plan: 'pro', first: 'x' },
  });
});
