// @segment/analytics-node -> sluice, unchanged but for `host`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Analytics } from '@segment/analytics-node';
import { BURST, BURST_USERS, BURST_DAY, startSluice, checkAggregates } from './lib/harness.mjs';

test('segment: tracks, identify and a 500-event burst arrive once despite lost acks', async (t) => {
  const sluice = await startSluice({ keys: { SEGMENT_WRITE_KEY_test: 'segment' }, failFirst: 2 });
  t.after(() => sluice.stop());
  const analytics = new Analytics({
    writeKey: 'SEGMENT_WRITE_KEY_test',
    host: sluice.url,
    flushInterval: 200,
    maxRetries: 5,
  });
  const errors = [];
  analytics.on('error', (e) => errors.push(e));
  let retried = 0;
  analytics.on('http_response', (r) => { if (r.status >= 500) retried++; });

  for (let i = 0; i < 3; i++) {
    analytics.track({
      userId: 'seg-user-1', anonymousId: 'seg-anon-1', event: 'Order Completed',
      properties: { order_id: `o-${i}`, revenue: 42.5 }, context: { ip: '203.0.113.7' },
    });
  }
  analytics.identify({ userId: 'seg-user-1', traits: { email: 'ada@example.com', plan: 'pro' } });
  for (let i = 0; i < BURST; i++) {
    analytics.track({
      userId: `burst-user-${i % BURST_USERS}`, event: 'Burst Event', properties: { i },
      timestamp: new Date(BURST_DAY + i),
    });
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  assert.deepEqual(errors, []);
  assert.ok(retried >= 2, `sluice answered 503 ${retried} times`);
  await checkAggregates(t, sluice, {
    userId: 'seg-user-1', identifyEvent: '$identify', tracks: 3,
    traits: { email: 'ada@example.com', plan: 'pro' },
  });
});
