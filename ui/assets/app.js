// Squall web console: plain JavaScript, no build step, no outside request.
// It reads the node's HTTP API (the same documents squallctl reads) and
// draws them; every figure on a page comes from one of these documents.
'use strict';

(function () {
  const TOKEN_KEY = 'squall.token';
  const view = document.getElementById('view');
  const statusBar = document.getElementById('status');

  // ---- DOM helpers: text is always set as text, never as HTML.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function fill(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  function table(headers, rows, attrs) {
    return h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.num ? 'num' : null }, x.label || x)))),
      h('tbody', {}, rows));
  }
  function td(v, num) { return h('td', { class: num ? 'num' : null }, v); }

  // ---- formatting
  function num(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e9)) return v.toExponential(3);
    return String(Number(v.toPrecision(6)));
  }
  function rate(v) { return v === null || v === undefined ? '–' : (v < 10 ? v.toFixed(2) : v.toFixed(1)); }
  function bytes(v) {
    if (v === null || v === undefined) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v.toFixed(0)) + ' ' + u[i];
  }
  function time(ms) { return ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '–'; }
  function isoTime(s) { return s && !s.startsWith('0001-') ? s.replace(/\.\d+Z$/, 'Z') : '–'; }
  // durationMs reads a sub-window's name ("90s", "1m", "250ms", "1h").
  function durationMs(d) {
    const m = /^(\d+)(ms|s|m|h)$/.exec(d);
    return m ? Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5 }[m[2]] : Infinity;
  }
  function keyHref(key) { return '#/key/' + encodeURIComponent(key); }
  function keyPath(key) { return '/debug/actors/' + encodeURIComponent(key); }

  // ---- the API, with the token
  class HTTPError extends Error {
    constructor(status, msg, body) { super(msg); this.status = status; this.body = body; }
  }
  let tokenPrompt = null; // the pending prompt, shared by every request that got a 401

  function askToken(wrong) {
    if (tokenPrompt) return tokenPrompt;
    const dlg = document.getElementById('token-dialog');
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    const err = document.getElementById('token-error');
    err.hidden = !wrong;
    err.textContent = wrong ? 'The node refused the token: check it and try again.' : '';
    input.value = '';
    tokenPrompt = new Promise((resolve) => {
      form.onsubmit = (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        sessionStorage.setItem(TOKEN_KEY, t);
        dlg.close();
        tokenPrompt = null;
        resolve();
      };
      dlg.oncancel = (e) => e.preventDefault(); // no data without the token
    });
    if (!dlg.open) dlg.showModal();
    input.focus();
    return tokenPrompt;
  }

  // api fetches path from this node and returns its JSON (or text, with
  // opts.text). A 401 asks for the token and tries again; statuses listed
  // in opts.accept return their body instead of throwing.
  async function api(path, opts) {
    opts = opts || {};
    for (;;) {
      const headers = { Accept: opts.text ? 'text/plain' : 'application/json' };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = 'Bearer ' + token;
      let resp;
      try {
        resp = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
      } catch (e) {
        throw new HTTPError(0, 'node unreachable: ' + e.message);
      }
      if (resp.status === 401) {
        await askToken(Boolean(token));
        continue;
      }
      if (resp.ok || (opts.accept || []).includes(resp.status)) {
        return opts.text ? resp.text() : resp.json();
      }
      let msg = resp.status + ' ' + resp.statusText;
      try { const b = await resp.json(); if (b && b.error) msg = b.error; } catch (e) { /* not JSON */ }
      throw new HTTPError(resp.status, msg);
    }
  }

  // ---- routing: #/cluster, #/keys?prefix=&after=, #/key/<key>, #/alerts, #/throughput
  const pages = { cluster: clusterPage, keys: keysPage, key: keyPage, alerts: alertsPage, throughput: throughputPage };
  let current = null; // { timers, alive }

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [path, query] = raw.split('?');
    const slash = path.indexOf('/');
    const name = slash < 0 ? path : path.slice(0, slash);
    const arg = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
    return { name: pages[name] ? name : 'cluster', arg, params: new URLSearchParams(query || '') };
  }

  async function route() {
    if (current) {
      current.alive = false;
      current.timers.forEach(clearInterval);
    }
    const r = parseHash();
    const ctx = {
      alive: true, timers: [],
      // every runs fn every ms while the page is shown; one at a time. The
      // element that has the focus keeps it across the refresh.
      every(ms, fn) {
        let busy = false;
        this.timers.push(setInterval(async () => {
          if (busy || !this.alive) return;
          busy = true;
          const focus = focusKey(document.activeElement);
          try {
            await fn();
            setStatus('');
          } catch (e) {
            setStatus(e.message, true);
          } finally {
            busy = false;
            if (this.alive) {
              refocus(focus);
              view.dataset.refreshes = String(Number(view.dataset.refreshes || 0) + 1);
            }
          }
        }, ms));
      },
    };
    current = ctx;
    for (const a of document.querySelectorAll('header nav a')) {
      if (a.dataset.page === r.name || (r.name === 'key' && a.dataset.page === 'keys')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    view.replaceChildren();
    view.dataset.page = r.name;
    view.dataset.hash = location.hash;
    view.dataset.ready = 'false';
    try {
      await pages[r.name](view, ctx, r);
      setStatus('');
    } catch (e) {
      if (!ctx.alive) return;
      append(view, h('p', { class: 'error', id: 'page-error' }, e.message));
      setStatus(e.message, true);
    }
    if (ctx.alive) view.dataset.ready = 'true';
  }

  // focusKey names the element of the view that has the focus, so that
  // refocus can find its successor once the view is drawn again.
  function focusKey(el) {
    if (!el || !view.contains(el) || el === view) return null;
    if (el.id) return { id: el.id };
    if (el.tagName === 'A') return { href: el.getAttribute('href') };
    return null;
  }
  function refocus(k) {
    const a = document.activeElement;
    if (!k || (a && a !== document.body && a.isConnected)) return; // the focus stayed, or moved on
    const el = k.id ? document.getElementById(k.id)
      : [...view.querySelectorAll('a')].find((a) => a.getAttribute('href') === k.href);
    if (el) el.focus({ preventScroll: true });
  }

  function setStatus(msg, bad) {
    statusBar.textContent = msg ? msg : 'Updated ' + new Date().toLocaleTimeString();
    statusBar.className = bad ? 'error' : '';
  }

  // heading puts the page title in the view and gives it the focus after a
  // navigation, so that keyboard and screen-reader users land on the page.
  function heading(v, text, focus) {
    const el = h('h1', { tabindex: -1 }, text);
    v.append(el);
    if (focus) el.focus({ preventScroll: true });
    return el;
  }
  function card(title, id) {
    const body = h('div', { id });
    return [h('section', { class: 'card', 'aria-labelledby': id + '-title' }, h('h2', { id: id + '-title' }, title), body), body];
  }

  // ---- Cluster
  function ownerColors(ids) {
    const m = new Map();
    ids.forEach((id, i) => m.set(id, 'hsl(' + Math.round((i * 137.5) % 360) + ', 55%, 40%)'));
    return m;
  }

  async function clusterPage(v, ctx, r, focus = true) {
    heading(v, 'Cluster', focus);
    const [factsCard, facts] = card('Overview', 'facts');
    const [membersCard, members] = card('Members', 'members');
    const [gridCard, grid] = card('Partition map', 'partitions');
    const [peersCard, peers] = card('Traffic per peer', 'peers');
    const [movingCard, moving] = card('Handoffs and replays in progress', 'moving');
    v.append(factsCard, membersCard, gridCard, peersCard, movingCard);
    let prev = null;

    async function refresh() {
      const [cl, ms] = await Promise.all([api('/debug/cluster'), api('/debug/cluster/members')]);
      if (!ctx.alive) return;
      document.getElementById('node').textContent = 'node ' + cl.self;
      fill(facts, h('dl', { class: 'facts' },
        h('dt', {}, 'Cluster'), h('dd', {}, cl.cluster),
        h('dt', {}, 'This node'), h('dd', { id: 'self' }, cl.self),
        h('dt', {}, 'Leader'), h('dd', { id: 'leader' }, cl.leader || '–'),
        h('dt', {}, 'Epoch'), h('dd', { id: 'epoch' }, cl.epoch),
        h('dt', {}, 'Generation'), h('dd', { id: 'generation' }, cl.generation),
        h('dt', {}, 'Partitions'), h('dd', { id: 'partition-count' }, cl.partition_count),
        h('dt', {}, 'ZooKeeper'), h('dd', {}, cl.connected ? 'connected' : h('span', { class: 'bad' }, 'no session')),
        h('dt', {}, 'Ready'), h('dd', {}, cl.ready ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'bad' }, 'no: ' + cl.not_ready_reason))));

      const ids = cl.members.map((m) => m.id).sort();
      const colors = ownerColors(ids);
      fill(members, table(['', 'Id', 'Remote address', 'HTTP address', 'Version', { label: 'Partitions', num: true }, 'Ready'],
        cl.members.map((m) => {
          const rdy = (ms.members || {})[m.id];
          const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
          sw.style.background = colors.get(m.id);
          return h('tr', { 'data-member': m.id },
            h('td', {}, sw),
            td(m.id + (m.id === cl.leader ? ' (leader)' : '') + (m.id === cl.self ? ' (this node)' : '')),
            td(m.remote_addr || '–'), td(m.http_addr), td(m.version), td(m.partitions.length, true),
            h('td', { class: 'ready' }, !rdy ? '–' : rdy.ready ? h('span', { class: 'ok' }, 'ready')
              : h('span', { class: 'bad' }, 'not ready' + (rdy.reason ? ': ' + rdy.reason : ''))));
        }), { id: 'members-table' }));

      const cells = [];
      for (let p = 0; p < cl.partition_count; p++) {
        const owner = cl.assignment[String(p)] || '';
        const c = h('div', { class: 'cell' + (owner ? '' : ' unassigned'), role: 'listitem', 'data-partition': p,
          'data-owner': owner, title: 'partition ' + p + ': ' + (owner || 'unassigned'),
          'aria-label': 'partition ' + p + ': ' + (owner || 'unassigned') }, p);
        if (owner) c.style.background = colors.get(owner) || '#555';
        cells.push(c);
      }
      fill(grid, h('div', { class: 'grid', role: 'list', id: 'partition-grid' }, cells),
        h('ul', { class: 'legend', id: 'partition-legend', 'aria-label': 'Owners' }, ids.map((id) => {
          const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
          sw.style.background = colors.get(id);
          const n = Object.values(cl.assignment).filter((o) => o === id).length;
          return h('li', {}, sw, id + ' (' + n + ')');
        }), Object.keys(cl.assignment).length < cl.partition_count
          ? h('li', {}, h('span', { class: 'swatch unassigned' }), 'unassigned') : null));

      const now = performance.now();
      const dt = prev ? (now - prev.t) / 1000 : 0;
      const peerIds = Object.keys(cl.peers || {}).sort();
      const per = (id, f) => (prev && prev.peers[id] && dt > 0 ? Math.max(0, (cl.peers[id][f] - prev.peers[id][f]) / dt) : null);
      fill(peers, peerIds.length === 0 ? h('p', { class: 'muted' }, 'No peer: this node has exchanged nothing with another node.')
        : [table(['Peer', { label: 'Events/s sent', num: true }, { label: 'Events/s received', num: true },
          { label: 'Bytes/s sent', num: true }, { label: 'Bytes/s received', num: true }, { label: 'Events sent', num: true }, { label: 'Events received', num: true }],
        peerIds.map((id) => h('tr', { 'data-peer': id }, td(id), td(rate(per(id, 'events_sent')), true), td(rate(per(id, 'events_received')), true),
          td(per(id, 'bytes_sent') === null ? '–' : bytes(per(id, 'bytes_sent')) + '/s', true),
          td(per(id, 'bytes_received') === null ? '–' : bytes(per(id, 'bytes_received')) + '/s', true),
          td(cl.peers[id].events_sent, true), td(cl.peers[id].events_received, true)))),
        prev ? null : h('p', { class: 'muted' }, 'Rates appear from the next refresh (every 3 s).')]);
      prev = { t: now, peers: cl.peers || {} };

      const moves = [], replays = [];
      for (const id of Object.keys(ms.members || {}).sort()) {
        for (const p of ms.members[id].moving || []) moves.push([id, p]);
        for (const x of ms.members[id].replaying || []) replays.push([id, x]);
      }
      fill(moving, moves.length === 0 && replays.length === 0
        ? h('p', { class: 'muted', id: 'moving-none' }, 'None: every member serves every partition it holds, and no log source replays.')
        : [moves.length ? table(['Node', 'Partition', 'State', 'Grant'], moves.map(([id, p]) =>
          h('tr', {}, td(id), td(p.partition), h('td', { class: 'warn' }, p.state), td(p.token))), { id: 'moving-table' }) : null,
        replays.length ? table(['Node', 'Log partition', { label: 'Replay from', num: true }, { label: 'Replay to', num: true },
          { label: 'Applied', num: true }, { label: 'Lag', num: true }], replays.map(([id, x]) =>
          h('tr', {}, td(id), td(x.partition), td(x.replay_from, true), td(x.replay_to, true), td(x.applied, true), td(x.lag, true))),
        { id: 'replaying-table' }) : null]);
    }
    await refresh();
    ctx.every(3000, refresh);
  }

  // ---- Keys
  async function keysPage(v, ctx, r) {
    heading(v, 'Keys', true);
    const prefix = r.params.get('prefix') || '';
    const after = r.params.get('after') || '';
    const limit = Math.min(Math.max(parseInt(r.params.get('limit') || '50', 10) || 50, 1), 10000);
    const input = h('input', { id: 'prefix', name: 'prefix', type: 'search', value: prefix, placeholder: 'web-1.', autocomplete: 'off' });
    const form = h('form', { class: 'inline', role: 'search', onsubmit: (e) => {
      e.preventDefault();
      location.hash = '#/keys?' + new URLSearchParams({ prefix: input.value, limit: String(limit) }).toString();
    } }, h('label', { for: 'prefix' }, 'Key prefix', input), h('button', { type: 'submit' }, 'Search'));
    const summary = h('p', { id: 'keys-summary' });
    const list = h('div', { id: 'keys' });
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of keys' });
    v.append(form, summary, list, pager);

    async function refresh() {
      const q = new URLSearchParams({ scope: 'cluster', prefix, limit: String(limit) });
      if (after) q.set('after', after);
      const kl = await api('/debug/actors?' + q.toString());
      if (!ctx.alive) return;
      fill(summary, h('strong', { id: 'live-count' }, kl.live), ' live keys in the cluster',
        prefix ? '; keys starting with “' + prefix + '”' : '', after ? ' after “' + after + '”' : '', ': ', kl.keys.length, ' listed.');
      fill(list, kl.keys.length === 0 ? h('p', { class: 'muted' }, 'No live key matches.')
        : table(['Key', 'Node', { label: 'Partition', num: true }, { label: 'Events applied', num: true }, 'Last event (wall clock)'],
          kl.keys.map((k) => h('tr', {}, h('td', {}, h('a', { href: keyHref(k.key), class: 'key-link' }, k.key)),
            td(k.node), td(k.partition, true), td(k.events_applied, true), td(isoTime(k.last_event_at)))), { id: 'keys-table' }));
      const page = (a) => '#/keys?' + new URLSearchParams(Object.assign({ prefix, limit: String(limit) }, a ? { after: a } : {})).toString();
      fill(pager, after ? h('a', { href: page(''), id: 'first-page' }, 'First page') : null,
        kl.truncated && kl.next ? h('a', { href: page(kl.next), id: 'next-page' }, 'Next page') : null);
    }
    await refresh();
    ctx.every(5000, refresh);
  }

  // ---- Key
  function aggRow(name, a) {
    return h('tr', {}, h('th', { scope: 'row' }, name), td(a.count, true), td(num(a.sum), true), td(num(a.min), true),
      td(num(a.max), true), td(num(a.mean), true), td(num(a.last && a.last.value), true), td(num(a.rate), true),
      td(num(a.p50), true), td(num(a.p95), true), td(num(a.p99), true));
  }

  // charts draw the buckets of a series: counts as bars, min/mean/max as
  // lines. The time axis ends with the newest bucket and starts with the
  // oldest (at least 60 buckets back, at most the retention).
  function charts(series) {
    const b = series.buckets;
    const W = 900, H = 200, L = 56, R = 10, T = 10, B = 24;
    const res = series.resolution_ms;
    const t1 = b[b.length - 1].ts + res;
    const t0 = Math.max(t1 - series.retention_ms, Math.min(b[0].ts, t1 - 60 * res));
    const x = (ts) => L + ((ts - t0) / (t1 - t0)) * (W - L - R);
    const bw = Math.max(1, ((W - L - R) * res) / (t1 - t0) - 1);
    const axes = (svg, lo, hi) => {
      svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
        s('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, num(hi)), s('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, num(lo)),
        s('text', { x: L, y: H - 6 }, time(t0)), s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, time(t1)));
    };

    const maxCount = Math.max(1, ...b.map((x) => x.count));
    const cs = s('svg', { class: 'chart', id: 'count-chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'aria-label': 'Events per bucket over the retention: ' + b.length + ' non-empty buckets' });
    axes(cs, 0, maxCount);
    for (const k of b) {
      const y = T + (1 - k.count / maxCount) * (H - T - B);
      const bar = s('rect', { class: 'bar', x: x(k.ts), y, width: bw, height: H - B - y });
      bar.append(s('title', {}, time(k.ts) + ': ' + k.count + ' events'));
      cs.append(bar);
    }

    const lo = Math.min(...b.map((x) => x.min)), hi = Math.max(...b.map((x) => x.max));
    const span = hi > lo ? hi - lo : Math.abs(hi) || 1;
    const vlo = hi > lo ? lo : lo - span / 2, vhi = hi > lo ? hi : hi + span / 2;
    const y = (v) => T + (1 - (v - vlo) / (vhi - vlo)) * (H - T - B);
    const vs = s('svg', { class: 'chart', id: 'value-chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'aria-label': 'Minimum, mean and maximum per bucket over the retention' });
    axes(vs, vlo, vhi);
    const lines = [['max', '#c0392b'], ['mean', '#1f5fbf'], ['min', '#2e8b57']];
    for (const [f, color] of lines) {
      vs.append(s('polyline', { class: 'line line-' + f, stroke: color, points: b.map((k) => x(k.ts + res / 2) + ',' + y(k[f])).join(' ') }));
    }
    for (const k of b) {
      const c = s('circle', { class: 'pt', cx: x(k.ts + res / 2), cy: y(k.mean), r: 2.5, fill: '#1f5fbf' });
      c.append(s('title', {}, time(k.ts) + ': min ' + num(k.min) + ', mean ' + num(k.mean) + ', max ' + num(k.max)));
      vs.append(c);
    }
    const legend = h('p', { class: 'chart-legend' }, lines.map(([f, color]) => {
      const i = h('i', { 'aria-hidden': 'true' });
      i.style.background = color;
      return h('span', {}, i, f);
    }));
    return [h('p', { class: 'muted' }, b.length + ' non-empty buckets of ' + res / 1000 + ' s in the window (' + series.retention_ms / 1000 + ' s).'),
      h('h3', {}, 'Events per bucket'), cs, h('h3', {}, 'Min, mean and max per bucket'), vs, legend];
  }

  async function keyPage(v, ctx, r) {
    const key = r.arg;
    heading(v, 'Key ' + key, true);
    const [factsCard, facts] = card('State', 'key-facts');
    const [aggCard, agg] = card('Window and sub-windows', 'key-aggregates');
    const [chartCard, chart] = card('Over the retention', 'key-chart');
    const [rulesCard, rulesBody] = card('Alert rules', 'key-rules');
    const [recentCard, recent] = card('Recent events', 'key-recent');
    const [replayCard, replayBody] = card('Replay', 'key-replay');
    v.append(factsCard, aggCard, chartCard, rulesCard, recentCard, replayCard);

    const replayOut = h('div', { id: 'replay-out' });
    fill(replayBody, h('p', { class: 'muted' }, 'Runs the events the key’s owner keeps through a fresh key actor of the same shape and rules, one step per event, and compares the result with the live key.'),
      h('button', { type: 'button', id: 'replay-button', onclick: runReplay }, 'Replay the key'), replayOut);

    async function runReplay() {
      fill(replayOut, h('p', { class: 'muted' }, 'Replaying…'));
      try {
        const kr = await api(keyPath(key) + '/replay', { accept: [409] });
        if (!kr.complete) {
          fill(replayOut, h('p', { class: 'error', id: 'replay-error' }, kr.error));
          return;
        }
        fill(replayOut,
          h('p', { id: 'replay-summary', class: kr.diff.length ? 'bad' : 'ok' }, kr.steps.length + ' events replayed on ' + kr.node + ': ' +
            (kr.diff.length ? kr.diff.length + ' differences from the live key' : 'equal to the live key')),
          kr.diff.length ? h('pre', { class: 'diff' }, kr.diff.join('\n')) : null,
          table([{ label: '#', num: true }, 'Event time', { label: 'Value', num: true }, 'Id', 'Outcome', { label: 'Count', num: true },
            { label: 'Mean', num: true }, { label: 'Max', num: true }, 'Alert transitions'],
          kr.steps.map((st) => h('tr', {}, td(st.index, true), td(time(st.ts)), td(num(st.value), true), td(st.id || ''), td(st.outcome),
            td(st.window.count, true), td(num(st.window.mean), true), td(num(st.window.max), true),
            td((st.transitions || []).map((t) => t.rule + ' ' + t.state).join(', ')))), { id: 'replay-steps' }));
      } catch (e) {
        fill(replayOut, h('p', { class: 'error', id: 'replay-error' }, e.message));
      }
    }

    async function refresh() {
      let st, series;
      try {
        [st, series] = await Promise.all([api(keyPath(key)), api(keyPath(key) + '/series')]);
      } catch (e) {
        if (e.status === 404) {
          fill(facts, h('p', { class: 'error', id: 'page-error' }, 'Key “' + key + '” has no live actor (never seen, or passivated).'));
          return;
        }
        throw e;
      }
      if (!ctx.alive) return;
      fill(facts, h('dl', { class: 'facts' },
        h('dt', {}, 'Node'), h('dd', {}, st.node), h('dt', {}, 'Partition'), h('dd', {}, st.partition),
        h('dt', {}, 'Events applied'), h('dd', { id: 'events-applied' }, st.events_applied),
        h('dt', {}, 'Late dropped'), h('dd', {}, st.late_dropped), h('dt', {}, 'Duplicates dropped'), h('dd', {}, st.duplicates_dropped),
        h('dt', {}, 'Activated'), h('dd', {}, isoTime(st.activated_at)), h('dt', {}, 'Last event (wall clock)'), h('dd', {}, isoTime(st.last_event_at)),
        st.tags ? [h('dt', {}, 'Tags'), h('dd', {}, Object.entries(st.tags).map(([k, x]) => k + '=' + x).join(' '))] : null));
      const subs = Object.keys(st.subwindows || {}).sort((a, b) => durationMs(a) - durationMs(b));
      fill(agg, table(['', { label: 'Count', num: true }, { label: 'Sum', num: true }, { label: 'Min', num: true }, { label: 'Max', num: true },
        { label: 'Mean', num: true }, { label: 'Last', num: true }, { label: 'Rate/s', num: true }, { label: 'p50', num: true },
        { label: 'p95', num: true }, { label: 'p99', num: true }],
      [aggRow('window', st.window), ...subs.map((n) => aggRow(n, st.subwindows[n]))], { id: 'aggregates' }));
      fill(chart, series.buckets.length ? charts(series) : h('p', { class: 'muted' }, 'No bucket.'));
      fill(rulesBody, st.rules.length === 0 ? h('p', { class: 'muted' }, 'No rule matches this key.')
        : table(['Rule', 'Kind', 'State', 'Severity', { label: 'Value', num: true }, 'Since'], st.rules.map((x) =>
          h('tr', { 'data-rule': x.rule }, td(x.rule), td(x.kind), h('td', { class: x.state === 'firing' ? 'bad' : x.state === 'pending' ? 'warn' : null }, x.state),
            td(x.severity || ''), td(num(x.value), true), td(isoTime(x.since)))), { id: 'rules-table' }));
      fill(recent, st.recent.length === 0 ? h('p', { class: 'muted' }, 'None.')
        : table(['Event time', { label: 'Value', num: true }, 'Id', 'Tags'], st.recent.slice().reverse().map((e) =>
          h('tr', {}, td(time(e.ts)), td(num(e.value), true), td(e.id || ''),
            td(Object.entries(e.tags || {}).map(([k, x]) => k + '=' + x).join(' ')))), { id: 'recent-table' }));
    }
    await refresh();
    ctx.every(3000, refresh);
  }

  // ---- Alerts
  async function alertsPage(v, ctx) {
    heading(v, 'Alerts', true);
    const body = h('div', { id: 'alerts' });
    v.append(body);
    async function refresh() {
      const doc = await api('/debug/alerts?scope=cluster');
      if (!ctx.alive) return;
      const rows = doc.alerts.map((f) => {
        const a = f.alert;
        return h('tr', { 'data-alert': a.id }, td(a.rule), h('td', {}, h('a', { href: keyHref(a.key) }, a.key)), td(num(a.value), true),
          td(num(a.threshold), true), td(a.severity || ''), td(time(a.started_at)), td(f.node));
      });
      const errs = Object.entries(doc.errors || {});
      fill(body, h('p', { id: 'alerts-summary' }, doc.alerts.length + ' firing in the cluster.'),
        rows.length ? table(['Rule', 'Key', { label: 'Value', num: true }, { label: 'Threshold', num: true }, 'Severity', 'Firing since', 'Node'],
          rows, { id: 'alerts-table' }) : null,
        errs.length ? h('p', { class: 'error' }, 'Not answering: ', errs.map(([id, e]) => id + ' (' + e + ')').join(', ')) : null);
    }
    await refresh();
    ctx.every(3000, refresh);
  }

  // ---- Throughput: this node's /metrics (Prometheus text), as rates.
  function parseMetrics(text) {
    const out = new Map();
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const lab = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const l of text.split('\n')) {
      if (!l || l[0] === '#') continue;
      const m = line.exec(l);
      if (!m) continue;
      const labels = {};
      for (const x of (m[2] || '').matchAll(lab)) labels[x[1]] = x[2];
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels, value: parseFloat(m[3]) });
    }
    return out;
  }
  function sum(ms, name, pred) {
    return (ms.get(name) || []).filter((x) => !pred || pred(x.labels)).reduce((a, x) => a + x.value, 0);
  }
  const RESULTS = ['applied', 'late', 'duplicate', 'invalid', 'failed', 'shed'];
  const RESULT_LABELS = { invalid: 'rejected', failed: 'failed', applied: 'applied', late: 'late', duplicate: 'duplicate', shed: 'shed' };
  const COLORS = { applied: '#1f5fbf', late: '#d98c00', duplicate: '#7b4fb5', invalid: '#c0392b', failed: '#8c1c13', shed: '#2e8b57' };

  async function throughputPage(v, ctx) {
    heading(v, 'Throughput', true);
    const [inCard, inBody] = card('Events in per second, by source and result', 'tp-in');
    const [chartCard, chartBody] = card('Events in per second (last 2 minutes)', 'tp-chart');
    const [keyCard, keyBody] = card('Key actors and Kafka', 'tp-keys');
    v.append(h('p', { class: 'muted' }, 'This node’s figures, from its /metrics, every 2 s.'), inCard, chartCard, keyCard);
    let prev = null;
    const history = [];

    async function refresh() {
      const ms = parseMetrics(await api('/metrics', { text: true }));
      if (!ctx.alive) return;
      const now = performance.now();
      const sample = { t: now, ms };
      const dt = prev ? (now - prev.t) / 1000 : 0;
      const rateOf = (name, pred) => (prev ? Math.max(0, (sum(ms, name, pred) - sum(prev.ms, name, pred)) / dt) : null);
      const sources = [...new Set((ms.get('squall_events_in_total') || []).map((x) => x.labels.source))].sort();
      fill(inBody, table(['Source', ...RESULTS.map((x) => ({ label: RESULT_LABELS[x], num: true }))], sources.map((src) =>
        h('tr', { 'data-source': src }, td(src), RESULTS.map((res) => h('td', { class: 'num', 'data-result': res },
          rate(rateOf('squall_events_in_total', (l) => l.source === src && l.result === res)))))), { id: 'in-table' }),
      prev ? null : h('p', { class: 'muted' }, 'Rates appear from the next refresh.'));

      if (prev) {
        const point = { t: Date.now() };
        for (const res of RESULTS) point[res] = rateOf('squall_events_in_total', (l) => l.result === res);
        history.push(point);
        while (history.length > 60) history.shift();
      }
      fill(chartBody, history.length < 2 ? h('p', { class: 'muted' }, 'Collecting samples…') : rateChart(history));

      // Apply latency over the interval, from the histogram's deltas.
      let lat = '–', p99 = '–';
      if (prev) {
        const dc = sum(ms, 'squall_apply_latency_seconds_count') - sum(prev.ms, 'squall_apply_latency_seconds_count');
        const ds = sum(ms, 'squall_apply_latency_seconds_sum') - sum(prev.ms, 'squall_apply_latency_seconds_sum');
        if (dc > 0) {
          lat = (ds / dc * 1000).toFixed(3) + ' ms';
          const buckets = (ms.get('squall_apply_latency_seconds_bucket') || []).map((x) => {
            const old = (prev.ms.get('squall_apply_latency_seconds_bucket') || []).find((y) => y.labels.le === x.labels.le);
            return { le: parseFloat(x.labels.le), n: x.value - (old ? old.value : 0) };
          }).sort((a, b) => a.le - b.le);
          const b = buckets.find((x) => x.n >= 0.99 * dc);
          if (b) p99 = Number.isFinite(b.le) ? '≤ ' + (b.le * 1000).toPrecision(3) + ' ms' : '> ' + (buckets[buckets.length - 2].le * 1000).toPrecision(3) + ' ms';
        }
      }
      const kafka = ms.has('squall_kafka_lag') ? sum(ms, 'squall_kafka_lag') : null;
      const log = ms.has('squall_log_lag') ? sum(ms, 'squall_log_lag') : null;
      fill(keyBody, h('dl', { class: 'facts' },
        h('dt', {}, 'Applied by key actors'), h('dd', { id: 'applied-rate' }, rate(rateOf('squall_key_events_total', (l) => l.result === 'applied')), ' /s'),
        h('dt', {}, 'Apply latency (mean, per partition batch)'), h('dd', { id: 'latency' }, lat),
        h('dt', {}, 'Apply latency p99 (histogram bucket)'), h('dd', {}, p99),
        h('dt', {}, 'Queued events'), h('dd', {}, num(sum(ms, 'squall_queue_events'))),
        h('dt', {}, 'Live key actors'), h('dd', {}, num(sum(ms, 'squall_key_actors_live'))),
        h('dt', {}, 'Kafka lag (records)'), h('dd', { id: 'kafka-lag' }, kafka === null ? 'no Kafka source' : num(kafka)),
        log === null ? null : [h('dt', {}, 'JetStream log lag (messages)'), h('dd', {}, num(log))]));
      prev = sample;
    }
    await refresh();
    ctx.every(2000, refresh);
  }

  function rateChart(hist) {
    const W = 900, H = 200, L = 56, R = 10, T = 10, B = 24;
    const t0 = hist[0].t, t1 = hist[hist.length - 1].t;
    const hi = Math.max(1, ...hist.flatMap((p) => RESULTS.map((r) => p[r] || 0)));
    const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / hi) * (H - T - B);
    const svg = s('svg', { class: 'chart', id: 'rate-chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Events in per second by result' });
    svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
      s('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, rate(hi)), s('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'),
      s('text', { x: L, y: H - 6 }, new Date(t0).toLocaleTimeString()), s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, new Date(t1).toLocaleTimeString()));
    const shown = RESULTS.filter((r) => hist.some((p) => p[r] > 0));
    for (const r of shown) {
      svg.append(s('polyline', { class: 'line', stroke: COLORS[r], points: hist.map((p) => x(p.t) + ',' + y(p[r] || 0)).join(' ') }));
    }
    const legend = h('p', { class: 'chart-legend' }, shown.length ? shown.map((r) => {
      const i = h('i', { 'aria-hidden': 'true' });
      i.style.background = COLORS[r];
      return h('span', {}, i, RESULT_LABELS[r]);
    }) : 'No event in over the last samples.');
    return [svg, legend];
  }

  window.addEventListener('hashchange', route);
  route();
})();
