// The sluice console. Talks only to the server that served it (same origin):
// /console/session, /admin/overview, /admin/dlq*, /admin/tail (SSE).
// Everything that comes from the server is put on the page as text
// (textContent, attribute values): nothing is ever parsed as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    csrf: '',
    refreshMs: Math.max(500, parseInt(document.body.dataset.refreshMs, 10) || 2000),
    timer: null,
    consumers: [],
    tail: null,
    tailPaused: false,
    tailDropped: 0,
    dead: [],
  };
  const kTailRows = 200;

  // ---- small helpers ----

  // el('td', {className: 'num'}, 'text', childNode, ...): text children become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === 'className') node.className = v;
        else if (k === 'title') node.title = v;
        else node.setAttribute(k, v);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function setText(id, text) { $(id).textContent = text; }

  function fmtInt(n) { return Number(n).toLocaleString('en-US'); }

  function fmtAge(ms) {
    if (ms === null || ms === undefined || ms < 0) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function showError(message) {
    const box = $('error');
    box.textContent = message;
    box.hidden = !message;
  }

  async function api(path, options = {}) {
    const init = { method: options.method || 'GET', credentials: 'same-origin', headers: {} };
    if (init.method !== 'GET') {
      init.headers['X-Sluice-CSRF'] = state.csrf;
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body || {});
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (res.status === 401) {
      showLogin('Your session ended; log in again.');
      throw new Error('login required');
    }
    if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
    return data;
  }

  // ---- login ----

  function showLogin(message) {
    stop();
    $('main').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    setText('login-message', message || '');
    $('login-token').focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const res = await fetch('/console/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: $('login-token').value }),
    });
    $('login-token').value = '';
    if (!res.ok) {
      setText('login-message', res.status === 401 ? 'Wrong token.' : `Login failed (HTTP ${res.status}).`);
      return;
    }
    const data = await res.json();
    state.csrf = data.csrf;
    $('logout').hidden = false;
    start();
  }

  async function logout() {
    try { await api('/console/logout', { method: 'POST' }); } catch { /* shown by api */ }
    showLogin('Logged out.');
  }

  // ---- overview ----

  function renderReplicas(replicas) {
    const body = $('replicas').tBodies[0];
    const rows = replicas.map((r) => {
      const busy = r.loops === null ? '—' : `${r.busy} / ${r.loops}`;
      const beat = el('td', null, fmtAge(r.heartbeat_age_ms) + ' ago');
      if (r.stale) beat.append(el('span', { className: 'badge bad' }, 'stale'));
      return el('tr', { className: r.stale ? 'stale' : '', 'data-replica': r.id },
        el('td', { className: 'code' }, r.id), el('td', null, r.host), el('td', { className: 'num' }, r.pid),
        el('td', null, r.version), el('td', null, r.started.replace('T', ' ')), beat,
        el('td', { className: 'num' }, fmtInt(r.leases_held)), el('td', { className: 'num' }, busy));
    });
    if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: '8', className: 'muted' }, 'No replica has a recent heartbeat.')));
    body.replaceChildren(...rows);
  }

  function renderQueue(q) {
    const approx = q.exact ? '' : '≈ ';
    setText('q-pending', approx + fmtInt(q.pending));
    setText('q-leased', fmtInt(q.leased));
    setText('q-dead', (q.dead_exact ? '' : '≥ ') + fmtInt(q.dead));
    setText('q-oldest', q.pending > 0 ? fmtAge(q.oldest_pending_age_ms) : '—');
    setText('q-note', q.exact ? '' :
      `More than ${fmtInt(q.scan_limit)} live events: the oldest ${fmtInt(q.scanned)} are counted, the rest estimated from ${fmtInt(q.samples)} probes (≈).`);
  }

  function renderChart(svgId, rateId, values, bucketMs) {
    const svg = $(svgId);
    const ns = 'http://www.w3.org/2000/svg';
    const perSec = values.map((v) => v * 1000 / bucketMs);
    const max = Math.max(1, ...perSec);
    const n = perSec.length;
    const pts = perSec.map((v, i) => `${(i * 300 / Math.max(1, n - 1)).toFixed(1)},${(58 - v * 54 / max).toFixed(1)}`);
    const area = document.createElementNS(ns, 'polygon');
    area.setAttribute('class', 'area');
    area.setAttribute('points', `0,60 ${pts.join(' ')} 300,60`);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('class', 'line');
    line.setAttribute('points', pts.join(' '));
    const title = document.createElementNS(ns, 'title');
    title.textContent = `peak ${max.toFixed(1)} events/s`;
    svg.replaceChildren(title, area, line);
    const last = n > 0 ? perSec[n - 1] : 0;
    setText(rateId, `${last.toFixed(1)}/s now, peak ${max.toFixed(1)}/s`);
  }

  function renderConsumers(consumers, delayWarningMs) {
    state.consumers = consumers.map((c) => c.name);
    const body = $('consumers').tBodies[0];
    const rows = consumers.map((c) => {
      const name = el('td', null, c.name, el('span', { className: 'badge' }, `${c.in_store ? 'in-store' : 'external'} · bit ${c.bit}`));
      if (c.delayed) name.append(el('span', { className: 'badge warn' }, 'delayed'));
      const waiting = c.waiting > 0
        ? `${fmtInt(c.waiting)} backing off, next in ${fmtAge(c.next_retry_in_ms)}` : '—';
      const failures = c.delivered_5m > 0
        ? `${fmtInt(c.failed_5m)} / ${fmtInt(c.delivered_5m)} (${(c.failure_rate * 100).toFixed(1)}%)` : '—';
      return el('tr', { className: c.delayed ? 'delayed' : '', 'data-consumer': c.name },
        name,
        el('td', { className: 'num backlog' }, (c.exact ? '' : '≈ ') + fmtInt(c.backlog)),
        el('td', null, c.oldest_age_ms === null ? 'not seen (probes missed it)'
          : (c.backlog > 0 ? (c.oldest_exact ? '' : '≈ ') + fmtAge(c.oldest_age_ms) : '—')),
        el('td', null, waiting),
        el('td', { className: 'num' }, failures),
        el('td', { className: 'num' }, (c.dead_exact ? '' : '≥ ') + fmtInt(c.dead)),
        el('td', null, c.retry_after_ms > 0 ? `wait ${fmtAge(c.retry_after_ms)}` : '—'));
    });
    if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: '7', className: 'muted' }, 'No consumers known.')));
    body.replaceChildren(...rows);
    setText('c-note', `Backlog: events the consumer has not processed yet (pending or leased, not dead). A consumer is delayed when its oldest unprocessed event is older than ${fmtAge(delayWarningMs)}. Failures, Retry-After: what the live replicas reported over the last 5 minutes.`);

    const select = $('dlq-consumer');
    const current = select.value;
    const options = [el('option', { value: '' }, 'any'), ...state.consumers.map((n) => el('option', { value: n }, n))];
    select.replaceChildren(...options);
    select.value = state.consumers.includes(current) ? current : '';
  }

  function renderBanner(consumers, delayWarningMs) {
    const delayed = consumers.filter((c) => c.delayed);
    const banner = $('banner');
    if (delayed.length === 0) {
      banner.hidden = true;
      banner.textContent = '';
      return;
    }
    const parts = delayed.map((c) => `${c.name} (oldest unprocessed event ${fmtAge(c.oldest_age_ms)} old, backlog ${c.exact ? '' : '≈ '}${fmtInt(c.backlog)})`);
    banner.textContent = `Processing is delayed beyond ${fmtAge(delayWarningMs)}: ${parts.join('; ')}.`;
    banner.hidden = false;
  }

  async function refresh() {
    try {
      const o = await api('/admin/overview');
      setText('store', `store: ${o.store}`);
      setText('served', `served by ${o.served_by}`);
      renderQueue(o.queue);
      renderReplicas(o.replicas);
      renderConsumers(o.consumers, o.delay_warning_ms);
      renderBanner(o.consumers, o.delay_warning_ms);
      renderChart('chart-in', 'rate-in', o.rates.ingested, o.rates.bucket_ms);
      renderChart('chart-out', 'rate-out', o.rates.processed, o.rates.bucket_ms);
      const live = $('live');
      live.textContent = `live · ${fmtTime(o.now_ms)}`;
      live.className = 'pill ok';
      showError('');
    } catch (e) {
      const live = $('live');
      live.textContent = 'disconnected';
      live.className = 'pill bad';
      if (e.message !== 'login required') showError(`Overview: ${e.message}`);
    }
  }

  // ---- dead letters ----

  function deadFilterQuery() {
    const q = new URLSearchParams({ limit: '200' });
    for (const [key, id] of [['project', 'dlq-project'], ['consumer', 'dlq-consumer'], ['error', 'dlq-error']]) {
      const v = $(id).value.trim();
      if (v) q.set(key, v);
    }
    return q.toString();
  }

  function selectedSeqs() {
    return [...$('dlq').querySelectorAll('input[type=checkbox][data-seq]:checked')].map((b) => Number(b.dataset.seq));
  }

  function updateDeadButtons() {
    const n = selectedSeqs().length;
    $('dlq-requeue').disabled = n === 0;
    $('dlq-purge').disabled = n === 0;
  }

  function renderDead(dead) {
    const body = $('dlq').tBodies[0];
    const rows = [];
    for (const d of dead) {
      const box = el('input', { type: 'checkbox', 'data-seq': String(d.seq), 'aria-label': `select ${d.seq}` });
      box.addEventListener('change', updateDeadButtons);
      const event = d.body && typeof d.body.event === 'string' ? d.body.event : '';
      const err = el('td', { className: 'wrap' }, d.last_error);
      const details = el('details', null, el('summary', { className: 'muted small' }, 'event'),
        el('pre', { className: 'body' }, JSON.stringify(d.body, null, 2)));
      err.append(details);
      rows.push(el('tr', { 'data-seq': String(d.seq) }, el('td', null, box), el('td', { className: 'num' }, d.seq),
        el('td', null, d.project), el('td', null, event), err, el('td', { className: 'num' }, d.attempts),
        el('td', null, d.died_at.replace('T', ' '))));
    }
    if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: '7', className: 'muted' }, 'No dead letters match.')));
    body.replaceChildren(...rows);
    $('dlq-all').checked = false;
    updateDeadButtons();
  }

  async function loadDead(ev) {
    if (ev) ev.preventDefault();
    try {
      const data = await api(`/admin/dlq?${deadFilterQuery()}`);
      state.dead = data.dead;
      renderDead(data.dead);
    } catch (e) {
      if (e.message !== 'login required') setText('dlq-message', `List failed: ${e.message}`);
    }
  }

  async function deadAction(action) {
    const seqs = selectedSeqs();
    if (seqs.length === 0) return;
    if (action === 'purge' && !window.confirm(`Delete ${seqs.length} dead event(s) for good?`)) return;
    try {
      const r = await api(`/admin/dlq/${action}`, { method: 'POST', body: { seqs } });
      setText('dlq-message', action === 'requeue' ? `Requeued ${r.requeued}.` : `Purged ${r.purged}.`);
    } catch (e) {
      setText('dlq-message', `${action} failed: ${e.message}`);
    }
    await loadDead();
  }

  // ---- live tail ----

  function tailQuery() {
    const q = new URLSearchParams();
    for (const [key, id] of [['project', 'tail-project'], ['event', 'tail-event'], ['user', 'tail-user']]) {
      const v = $(id).value.trim();
      if (v) q.set(key, v);
    }
    return q.toString();
  }

  function addTailRow(ev) {
    const props = ev.body && ev.body.properties !== undefined ? JSON.stringify(ev.body.properties)
      : (ev.body_text !== undefined ? ev.body_text : '');
    const text = props.length > 300 ? `${props.slice(0, 300)}…` : props;
    const row = el('tr', { 'data-insert-id': ev.insert_id },
      el('td', null, fmtTime(ev.at_ms)), el('td', null, ev.project), el('td', null, ev.event),
      el('td', null, ev.user_id || ev.anonymous_id), el('td', { className: 'wrap code props' }, text));
    const body = $('tail').tBodies[0];
    body.prepend(row);
    while (body.rows.length > kTailRows) body.deleteRow(body.rows.length - 1);
  }

  function openTail() {
    closeTail();
    const src = new EventSource(`/admin/tail?${tailQuery()}`);
    state.tail = src;
    const pill = $('tail-state');
    src.addEventListener('open', () => { pill.textContent = 'streaming'; pill.className = 'pill ok'; });
    src.addEventListener('error', () => { pill.textContent = 'reconnecting'; pill.className = 'pill bad'; });
    src.addEventListener('hello', (m) => {
      const h = JSON.parse(m.data);
      setText('tail-rate', String(h.max_events_per_s));
    });
    src.addEventListener('dropped', (m) => {
      state.tailDropped += JSON.parse(m.data).dropped;
      setText('tail-dropped', `${fmtInt(state.tailDropped)} skipped (rate limit).`);
    });
    src.addEventListener('message', (m) => {
      if (state.tailPaused) return;
      addTailRow(JSON.parse(m.data));
    });
  }

  function closeTail() {
    if (state.tail) state.tail.close();
    state.tail = null;
  }

  // ---- wiring ----

  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    closeTail();
  }

  function start() {
    $('login').hidden = true;
    $('main').hidden = false;
    stop();
    refresh();
    state.timer = setInterval(refresh, state.refreshMs);
    loadDead();
    openTail();
  }

  async function init() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('dlq-filter').addEventListener('submit', loadDead);
    $('dlq-requeue').addEventListener('click', () => deadAction('requeue'));
    $('dlq-purge').addEventListener('click', () => deadAction('purge'));
    $('dlq-all').addEventListener('change', (ev) => {
      for (const b of $('dlq').querySelectorAll('input[type=checkbox][data-seq]')) b.checked = ev.target.checked;
      updateDeadButtons();
    });
    $('tail-filter').addEventListener('submit', (ev) => { ev.preventDefault(); openTail(); });
    $('tail-pause').addEventListener('click', () => {
      state.tailPaused = !state.tailPaused;
      $('tail-pause').textContent = state.tailPaused ? 'Resume' : 'Pause';
    });
    $('tail-clear').addEventListener('click', () => $('tail').tBodies[0].replaceChildren());
    try {
      const res = await fetch('/console/session', { credentials: 'same-origin' });
      const s = await res.json();
      if (!res.ok) {
        showError(s.error || `HTTP ${res.status}`);
        return;
      }
      if (s.login_required) {
        showLogin('');
        return;
      }
      state.csrf = s.csrf;
      $('logout').hidden = s.auth !== 'token';
      start();
    } catch (e) {
      showError(`Cannot reach sluice: ${e.message}`);
    }
  }

  init();
})();
