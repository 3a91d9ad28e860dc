// Peer job queues on the same PostgreSQL as sluice, for bench/peers.sh.
//
//   node bench.js pgboss|graphile --url URL --jobs N --mode default|batch [--batch-size B]
//                 [--max-seconds S]
//
// Enqueues N jobs with the library's bulk API (timed separately), then starts
// one worker with a no-op handler and times from its start until the database
// shows every job finished, or S seconds passed (then units/s counts the jobs
// finished by then: pg-boss's default worker fetches one job per 2 s poll).
// Prints one JSON object.
"use strict";
const { Client } = require("pg");

function args() {
  const a = { peer: process.argv[2], url: "", jobs: 100000, mode: "default", batchSize: 500,
              maxSeconds: 3600 };
  for (let i = 3; i < process.argv.length; i += 2) {
    const k = process.argv[i], v = process.argv[i + 1];
    if (k === "--url") a.url = v;
    else if (k === "--jobs") a.jobs = Number(v);
    else if (k === "--mode") a.mode = v;
    else if (k === "--batch-size") a.batchSize = Number(v);
    else if (k === "--max-seconds") a.maxSeconds = Number(v);
    else throw new Error("unknown flag " + k);
  }
  return a;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// synchronous_commit as a connection of this process sees it: "off" when
// bench/peers.sh passes PGOPTIONS='-c synchronous_commit=off' (the pg driver
// sends PGOPTIONS at connect, for the library's pools as for this client).
async function syncCommit(client) {
  const { rows } = await client.query("SHOW synchronous_commit");
  return rows[0].synchronous_commit;
}

// Polls `sql` (a count of unfinished jobs) until it reaches 0 or timeoutS
// passed; returns [time, jobs still unfinished].
async function waitZero(client, sql, params, timeoutS) {
  const t0 = now();
  for (;;) {
    const { rows } = await client.query(sql, params);
    const n = Number(rows[0].n);
    if (n === 0 || now() - t0 > timeoutS) return [now(), n];
    await sleep(20);
  }
}

async function pgboss(a) {
  const PgBoss = require("pg-boss");
  const boss = new PgBoss({ connectionString: a.url });
  boss.on("error", (e) => console.error("pg-boss:", e.message));
  await boss.start();
  const name = "bench";
  await boss.createQueue(name);
  const t0 = now();
  for (let i = 0; i < a.jobs; i += 1000) {
    const jobs = [];
    for (let j = i; j < Math.min(a.jobs, i + 1000); j++) jobs.push({ name, data: { i: j } });
    await boss.insert(jobs);
  }
  const enq = now() - t0;
  const client = new Client({ connectionString: a.url });
  await client.connect();
  const durability = await syncCommit(client);
  let handled = 0;
  const opts = a.mode === "batch" ? { batchSize: a.batchSize, pollingIntervalSeconds: 0.5 } : {};
  const t1 = now();
  await boss.work(name, opts, async (jobs) => { handled += jobs.length; });
  const [t2, left] = await waitZero(client,
    "SELECT count(*) AS n FROM pgboss.job WHERE name = $1 AND state < 'completed'", [name],
    a.maxSeconds);
  await client.end();
  await boss.stop({ graceful: false, wait: false }).catch(() => {});
  return { enqueue_seconds: enq, seconds: t2 - t1, handled, finished: a.jobs - left, durability,
           settings: a.mode === "batch"
             ? `work({batchSize: ${a.batchSize}, pollingIntervalSeconds: 0.5})`
             : "work() defaults (batchSize 1, pollingIntervalSeconds 2)" };
}

async function graphile(a) {
  const { run, makeWorkerUtils } = require("graphile-worker");
  const utils = await makeWorkerUtils({ connectionString: a.url });
  await utils.migrate();
  const t0 = now();
  for (let i = 0; i < a.jobs; i += 1000) {
    const specs = [];
    for (let j = i; j < Math.min(a.jobs, i + 1000); j++) specs.push({ identifier: "noop", payload: { i: j } });
    await utils.addJobs(specs);
  }
  const enq = now() - t0;
  await utils.release();
  const client = new Client({ connectionString: a.url });
  await client.connect();
  const durability = await syncCommit(client);
  let handled = 0;
  const options = {
    connectionString: a.url,
    noHandleSignals: true,
    taskList: { noop: async () => { handled++; } },
    logger: new (require("graphile-worker").Logger)(() => () => {}),
  };
  let settings = "run() defaults (concurrency 1)";
  if (a.mode === "batch") {
    options.concurrency = 10;
    options.preset = { worker: { localQueue: { size: a.batchSize }, completeJobBatchDelay: 0,
                                 failJobBatchDelay: 0 } };
    settings = `concurrency 10, localQueue.size ${a.batchSize}, completeJobBatchDelay 0`;
  }
  const t1 = now();
  const runner = await run(options);
  const [t2, left] = await waitZero(client, "SELECT count(*) AS n FROM graphile_worker._private_jobs",
    [], a.maxSeconds);
  await client.end();
  await runner.stop();
  return { enqueue_seconds: enq, seconds: t2 - t1, handled, finished: a.jobs - left, durability,
           settings };
}

(async () => {
  const a = args();
  const r = a.peer === "pgboss" ? await pgboss(a) : a.peer === "graphile" ? await graphile(a) : null;
  if (!r) throw new Error("peer must be pgboss or graphile");
  const version = require(a.peer === "pgboss" ? "pg-boss/package.json" : "graphile-worker/package.json").version;
  console.log(JSON.stringify({ peer: a.peer === "pgboss" ? "pg-boss" : "graphile-worker", version,
    mode: a.mode, jobs: a.jobs, ...r, enqueue_per_s: a.jobs / r.enqueue_seconds,
    units_per_s: r.finished / r.seconds, complete: r.finished === a.jobs }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
