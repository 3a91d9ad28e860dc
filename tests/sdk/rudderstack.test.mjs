// @rudderstack/rudder-sdk-node -> sluice (Segment's format on /v1/batch, gzipped,
// Content-Type application/x-www-form-urlencoded, key only in Basic auth).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Analytics from '@rudderstack/rudder-sdk-node';
import { BURST, BURST_USERS, BURST_DAY, startSluice, checkAggregates, waitFor } from './lib/harness.mjs';

test('rudderstack: tracks, identify and a 500-event burst arrive once despite lost acks', async (t) => {
  const sluice = await startSluice({ keys: { RUDDER_WRITE_KEY_test: 'rudder' }, failFirst: 2 });
  t.after(() => sluice.stop());
  const errors = [];
  // errorHandler: without it a final failure would crash this process (its
  // flushes reject unhandled).
  const client = new Analytics('RUDDER_WRITE_KEY_test', {
    dataPlaneUrl: sluice.url, flushAt: 20, flushInterval: 200, errorHandler: (e) => errors.push(e),
  });
  for (let i = 0; i < 3; i++) {
    client.track({
      userId: 'rs-user-1', anonymousId: 'rs-anon-1', event: 'Order Completed',
      properties: { order_id: `o-${i}`, revenue: 42.5 },
    });
  }
  client.identify({ userId: 'rs-user-1', traits: { email: 'ada@example.com', plan: 'pro' } });
  for (let i = 0; i < BURST; i++) {
    client.track({
      userId: `burst-user-${i % BURST_USERS}`, event: 'Burst Event', properties: { i },
      timestamp: new Date(BURST_DAY + i),
    });
  }
  // flush() sends at most flushAt events per call: flush until the queue is empty.
  await waitFor('rudder queue empty', async () => {
    await client.flush();
    return client.queue === undefined || client.queue.length === 0;
  }, 60000, 50);
  assert.deepEqual(errors, []);
  await checkAggregates(t, sluice, {
    userId: 'rs-user-1', identifyEvent: '$identify', tracks: 3,
    traits: { email: 'ada@example.com', plan: 'pro' },
  });
});
