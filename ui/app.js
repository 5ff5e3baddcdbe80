/* app.js — the ocimirror web UI: a single page with hash routing that reads
 * the admin JSON API (/api/v1/..., docs/admin-api.md) and nothing else.
 *
 * Pages (location.hash):
 *   #/                        dashboard: figures, traffic chart, in-flight
 *                             downloads, upstream health, prefetch, events
 *   #/repos?q=&upstream=&page= repository browser (server-side search/paging)
 *   #/r/<name>                one repository: its tags
 *   #/i/<name>@<digest>?tag=  one image: platforms, layers, config, pull cmds
 *   #/route?name=&ns=         "where does this name go?"
 *   #/setup?for=              client configuration for this mirror
 *
 * Rules this file keeps:
 *  - Text from the API only ever enters the page as text (textContent, text
 *    nodes via h()); there is no innerHTML anywhere.  The server's CSP also
 *    forbids inline script, so a slip could not run code.
 *  - Every string a person reads comes from the dictionary in i18n.js (t()).
 *  - Nothing is loaded whole: lists are paged by the server; polling stops
 *    when the page changes (each view gets a context whose timers and
 *    fetches are cancelled on navigation) and pauses while the tab is hidden.
 *  - Figures carry their raw API value in data-raw so tests can compare the
 *    page with the API exactly.
 */
'use strict';

(() => {
  const DICT = window.OM_I18N;
  const LANGS = Object.keys(DICT);
  const PER_PAGE = 50;
  const CLIENTS = ['docker', 'containerd', 'crio', 'podman', 'k3s', 'kubeadm'];
  let lang = 'en';

  // ---------------------------------------------------------------- storage
  function store(kind) {
    try { return kind === 'session' ? window.sessionStorage : window.localStorage; } catch (e) { return null; }
  }
  function getSaved(kind, key) {
    const s = store(kind);
    try { return s ? s.getItem(key) : null; } catch (e) { return null; }
  }
  function setSaved(kind, key, value) {
    const s = store(kind);
    try {
      if (!s) return;
      if (value === null) s.removeItem(key); else s.setItem(key, value);
    } catch (e) { /* private mode: the choice just is not remembered */ }
  }

  // ------------------------------------------------------------------- i18n
  function pickLang() {
    const saved = getSaved('local', 'om.lang');
    if (saved && DICT[saved]) return saved;
    const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
    for (const l of prefs) {
      const s = String(l).toLowerCase();
      if (s.startsWith('zh')) return 'zh';
      if (s.startsWith('en')) return 'en';
    }
    return 'en';
  }

  /* t('key', {n: 3}) → the current language's string with {n} filled in. */
  function t(key, params) {
    let s = DICT[lang][key];
    if (s === undefined) s = DICT.en[key];
    if (s === undefined) s = key;
    if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
    return s;
  }
  const locale = () => (lang === 'zh' ? 'zh-CN' : 'en-US');

  // -------------------------------------------------------------------- DOM
  /* h('a', {href: '#/', class: 'x'}, 'text', child...) — children that are
   * not nodes become text nodes, never markup. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    appendKids(el, kids);
    return el;
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    appendKids(el, kids);
    return el;
  }
  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function appendKids(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }

  // ------------------------------------------------------------- formatting
  const isNum = (n) => typeof n === 'number' && isFinite(n);
  function fmtNum(n) { return isNum(n) ? new Intl.NumberFormat(locale()).format(n) : '—'; }
  function fmtBytes(n) {
    if (!isNum(n) || n < 0) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = n, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
    return v.toFixed(digits) + ' ' + units[i];
  }
  function fmtPct(r) { return isNum(r) ? (r * 100).toFixed(1) + '%' : '—'; }
  function fmtRate(bps) { return isNum(bps) && bps >= 0 ? fmtBytes(bps) + '/s' : '—'; }
  function fmtDuration(sec) {
    if (!isNum(sec) || sec < 0) return '—';
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600);
    const m = Math.floor((sec % 3600) / 60), ss = sec % 60;
    if (d > 0) return t('dur.dh', { d, h: hh });
    if (hh > 0) return t('dur.hm', { h: hh, m });
    if (m > 0) return t('dur.ms', { m, s: ss });
    return t('dur.s', { s: ss });
  }
  function fmtAgo(ms) {
    if (!isNum(ms) || ms <= 0) return t('never');
    const diff = (ms - Date.now()) / 1000;
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
    const a = Math.abs(diff);
    if (a < 45) return rtf.format(Math.round(diff), 'second');
    if (a < 2700) return rtf.format(Math.round(diff / 60), 'minute');
    if (a < 64800) return rtf.format(Math.round(diff / 3600), 'hour');
    return rtf.format(Math.round(diff / 86400), 'day');
  }
  function fmtDate(ms) {
    if (!isNum(ms) || ms <= 0) return '—';
    return new Date(ms).toLocaleString(locale());
  }
  /* A <time> showing "3 minutes ago" with the full date as tooltip. */
  function timeEl(ms) {
    if (!isNum(ms) || ms <= 0) return h('span', { class: 'muted', 'data-raw': 0 }, t('never'));
    return h('time', { datetime: new Date(ms).toISOString(), title: fmtDate(ms), 'data-raw': ms }, fmtAgo(ms));
  }
  /* Image config times are RFC 3339 strings. */
  function isoEl(str) {
    if (!str) return '—';
    const ms = Date.parse(str);
    if (!isFinite(ms)) return String(str);
    return h('time', { datetime: str, title: str }, fmtDate(ms));
  }
  function shortDigest(d) {
    if (typeof d !== 'string') return '—';
    const i = d.indexOf(':');
    return i < 0 ? d.slice(0, 12) : d.slice(0, i + 1) + d.slice(i + 1, i + 13);
  }
  function digestEl(d) { return h('code', { class: 'digest', title: d || '' }, shortDigest(d)); }

  // ------------------------------------------------------------------ links
  const encName = (name) => String(name).split('/').map(encodeURIComponent).join('/');
  const decName = (enc) => enc.split('/').map(decodeURIComponent).join('/');
  const repoHref = (name) => '#/r/' + encName(name);
  function imageHref(name, digest, tag) {
    return '#/i/' + encName(name) + '@' + encodeURIComponent(digest).replace('%3A', ':') +
      (tag ? '?tag=' + encodeURIComponent(tag) : '');
  }
  const apiName = (name) => encName(name);

  // -------------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, opts) {
    const o = opts || {};
    const headers = { Accept: 'application/json' };
    const token = getSaved('session', 'om.token');
    if (token) headers.Authorization = 'Bearer ' + token;
    if (o.body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch(path, {
        method: o.method || 'GET', headers, signal: o.signal, cache: 'no-store',
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
      });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'NETWORK', t('err.network'));
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!r.ok) {
      const e0 = body && Array.isArray(body.errors) && body.errors[0] ? body.errors[0] : {};
      // Only when the token this request carried is still the one in use:
      // a request sent before the user entered a token must not reopen the
      // prompt when its 401 arrives after they did.
      if (r.status === 401 && (getSaved('session', 'om.token') || null) === (token || null)) showAuth();
      throw new ApiError(r.status, e0.code || 'HTTP_' + r.status, e0.message || r.statusText || String(r.status));
    }
    if (body === null || typeof body !== 'object') throw new ApiError(r.status, 'BAD_JSON', t('err.badjson'));
    return body;
  }

  function errorBox(e) {
    let msg;
    if (e instanceof ApiError) {
      msg = e.status === 401 ? t('err.401') : e.status === 403 ? t('err.403') :
        e.status === 0 ? t('err.network') : t('err.api', { status: e.status, message: e.message });
    } else {
      msg = t('err.generic', { message: e && e.message ? e.message : String(e) });
    }
    return h('p', { class: 'error', role: 'alert' }, msg);
  }

  // --------------------------------------------------------- view contexts
  /* Each rendered view owns a context; navigating kills it, which aborts its
   * fetches and stops its timers. */
  let current = null;
  function newContext() {
    if (current) {
      current.dead = true;
      current.ac.abort();
      for (const id of current.timers) clearTimeout(id);
    }
    current = { ac: new AbortController(), timers: new Set(), dead: false };
    return current;
  }
  function later(ctx, ms, fn) {
    const id = setTimeout(() => { ctx.timers.delete(id); if (!ctx.dead) fn(); }, ms);
    ctx.timers.add(id);
    return id;
  }
  /* Run fn now and then every ms after it finishes (no pile-up when the
   * server is slow); skipped while the tab is hidden. */
  function poll(ctx, ms, fn) {
    let first = true;
    const tick = async () => {
      if (ctx.dead) return;
      if (first || !document.hidden) {
        first = false;
        try { await fn(); } catch (e) { if (!(e && e.name === 'AbortError')) console.warn(e); }
      }
      later(ctx, ms, tick);
    };
    return tick();
  }
  function debounce(ms, fn) {
    let id = null;
    return (...a) => { clearTimeout(id); id = setTimeout(() => fn(...a), ms); };
  }

  // ------------------------------------------------------------------ copy
  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (e) { /* fall through to the old way */ }
    const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    ta.remove();
    return ok;
  }
  function copyButton(getText, label) {
    const b = h('button', { type: 'button', class: 'copy', 'aria-label': label || t('copy') }, t('copy'));
    b.addEventListener('click', async () => {
      const ok = await copyText(getText());
      b.textContent = ok ? t('copied') : t('copy.failed');
      b.classList.toggle('done', ok);
      setTimeout(() => { b.textContent = t('copy'); b.classList.remove('done'); }, 1500);
      announce(ok ? t('copied') : t('copy.failed'));
    });
    return b;
  }
  /* A command or file as a <pre> with a copy button. */
  function codeBlock(text, opts) {
    const o = opts || {};
    return h('div', { class: 'codeblock', 'data-copy': o.id || null },
      o.title ? h('div', { class: 'codehead' }, h('code', null, o.title), copyButton(() => text, t('copy.what', { what: o.title }))) : null,
      h('div', { class: 'codebody' },
        h('pre', null, h('code', null, text)),
        o.title ? null : copyButton(() => text, o.label)));
  }
  function announce(msg) {
    const live = document.getElementById('live');
    if (live) { live.textContent = ''; setTimeout(() => { live.textContent = msg; }, 30); }
  }

  // --------------------------------------------------------------- helpers
  function section(title, ...kids) {
    return h('section', { class: 'panel' }, h('h2', null, title), ...kids);
  }
  /* A table that turns into labelled blocks on a narrow screen (CSS reads
   * data-label). cols: [{label, cls}], rows: [[cell...]]. */
  function table(cols, rows, opts) {
    const o = opts || {};
    return h('div', { class: 'tablewrap' },
      h('table', { class: 'rt' + (o.cls ? ' ' + o.cls : ''), 'data-t': o.id || null },
        o.caption ? h('caption', { class: 'sr' }, o.caption) : null,
        h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.cls || null }, c.label)))),
        h('tbody', null, rows.map((r) => h('tr', r.attrs || null,
          (r.cells || r).map((cell, i) => h('td', { 'data-label': cols[i].label, class: cols[i].cls || null }, cell))))),
        o.foot ? h('tfoot', null, o.foot) : null));
  }
  function badge(text, kind) { return h('span', { class: 'badge ' + (kind || '') }, text); }
  function dl(pairs, cls) {
    return h('dl', { class: 'kv' + (cls ? ' ' + cls : '') },
      pairs.filter(Boolean).map(([k, v, key]) => h('div', { 'data-k': key || null }, h('dt', null, k), h('dd', null, v))));
  }
  const arr = (x) => (Array.isArray(x) ? x : []);
  const plural = (n, one, many) => t(n === 1 ? one : many, { n: fmtNum(n) });

  // ------------------------------------------------------------ dashboard
  function viewDashboard(view, ctx) {
    view.append(h('h1', { tabindex: '-1' }, t('dash.title')));
    const cards = h('dl', { class: 'cards', 'aria-live': 'off' });
    const chart = h('div', { class: 'chart' });
    const inflight = h('div', { class: 'inflight', 'data-t': 'inflight' });
    const ups = h('div', { 'data-t': 'upstreams' });
    const prefetch = h('div', { 'data-t': 'prefetch' });
    const pfForm = prefetchForm(ctx);
    const events = h('div', { 'data-t': 'events' });
    const cardsErr = h('div');
    view.append(cardsErr, cards,
      section(t('dash.chart'), chart),
      section(t('dash.inflight'), inflight),
      section(t('dash.upstreams'), ups),
      section(t('dash.prefetch'), prefetch, pfForm),
      section(t('dash.events'), events));

    poll(ctx, 5000, async () => {
      try {
        const st = await api('/api/v1/stats', { signal: ctx.ac.signal });
        cardsErr.replaceChildren();
        renderCards(cards, st);
        renderChart(chart, arr(st.history));
        setVersion(st.version);
      } catch (e) {
        if (e.name !== 'AbortError') cardsErr.replaceChildren(errorBox(e));
        throw e;
      }
    });
    poll(ctx, 1500, async () => renderSafely(inflight, async () => {
      const r = await api('/api/v1/inflight', { signal: ctx.ac.signal });
      return renderInflight(arr(r.downloads));
    }));
    poll(ctx, 10000, async () => renderSafely(ups, async () => {
      const r = await api('/api/v1/upstreams', { signal: ctx.ac.signal });
      return renderUpstreams(arr(r.upstreams));
    }));
    poll(ctx, 5000, async () => renderSafely(prefetch, async () => {
      let r = null;
      try {
        r = await api('/api/v1/prefetch', { signal: ctx.ac.signal });
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
      }
      pfForm.hidden = r === null;
      return renderPrefetch(r ? arr(r.jobs) : null);
    }));
    poll(ctx, 5000, async () => renderSafely(events, async () => {
      const r = await api('/api/v1/events?limit=20', { signal: ctx.ac.signal });
      return renderEvents(arr(r.events));
    }));
  }

  /* Replace box's content with what build() returns, or with an error
   * (keeping the last good content underneath, dimmed). */
  async function renderSafely(box, build) {
    try {
      const content = await build();
      box.replaceChildren(content);
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      const old = box.querySelector(':scope > :not(.error)');
      box.replaceChildren(errorBox(e));
      if (old) { old.classList.add('stale'); box.append(old); }
    }
  }

  function renderCards(cards, st) {
    const c = st.cache || {}, cb = st.cache_bytes || {}, hr = st.hit_ratio || {};
    const bs = st.bytes_served || {}, sto = st.storage || {};
    const quota = isNum(sto.quota_bytes) ? sto.quota_bytes : 0;
    const used = isNum(sto.used_bytes) ? sto.used_bytes : 0;
    const pct = quota > 0 ? Math.min(100, (used * 100) / quota) : null;
    const card = (key, label, value, raw, sub, extra) =>
      h('div', { class: 'card', 'data-k': key },
        h('dt', null, label),
        h('dd', { class: 'value', 'data-raw': raw }, value),
        sub ? h('dd', { class: 'sub' }, sub) : null,
        extra || null);
    const bar = quota > 0 ? meter(pct, t('card.storage')) : null;
    cards.replaceChildren(
      card('hit_ratio.last_hour', t('card.hit_hour'), fmtPct(hr.last_hour), hr.last_hour,
        t('card.hit_hour.sub')),
      card('hit_ratio.since_start', t('card.hit_start'), fmtPct(hr.since_start), hr.since_start,
        t('card.hits_misses', { hit: fmtNum(c.hit), miss: fmtNum(c.miss), stale: fmtNum(c.stale), coalesced: fmtNum(c.coalesced) })),
      card('requests', t('card.requests'), fmtNum(st.requests), st.requests,
        t('card.uptime', { d: fmtDuration(st.uptime_s) })),
      card('bytes_served.cache', t('card.from_cache'), fmtBytes(bs.cache), bs.cache,
        t('card.hit_bytes', { b: fmtBytes(cb.hit) })),
      card('bytes_served.upstream', t('card.from_upstream'), fmtBytes(bs.upstream), bs.upstream,
        t('card.miss_bytes', { b: fmtBytes(cb.miss) })),
      card('storage.used_bytes', t('card.storage'), fmtBytes(used), used,
        quota > 0 ? t('card.quota', { q: fmtBytes(quota), p: pct.toFixed(1) }) : t('card.noquota'), bar),
      card('storage.repositories', t('card.repos'), fmtNum(sto.repositories), sto.repositories,
        h('a', { href: '#/repos' }, t('card.browse'))),
      card('storage.tags', t('card.tags'), fmtNum(sto.tags), sto.tags),
      card('storage.manifests', t('card.manifests'), fmtNum(sto.manifests), sto.manifests),
      card('storage.blobs', t('card.blobs'), fmtNum(sto.blobs), sto.blobs));
    if (pct !== null && pct >= 90) cards.querySelector('[data-k="storage.used_bytes"]').classList.add('warn');
  }

  /* A horizontal bar with role=progressbar; pct null = unknown total. */
  function meter(pct, label) {
    const fill = h('span', { class: 'fill' });
    const m = h('div', {
      class: 'meter' + (pct === null ? ' indeterminate' : ''), role: 'progressbar', 'aria-label': label,
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': pct === null ? null : pct.toFixed(0),
    }, fill);
    // CSSOM, not a style attribute: allowed by the page's CSP.
    if (pct !== null) fill.style.width = Math.max(0, Math.min(100, pct)).toFixed(1) + '%';
    return m;
  }

  /* Stacked bars (bytes from cache / from upstream per minute) and a line
   * (hit ratio per minute), last 60 minutes, inline SVG. */
  function renderChart(box, hist) {
    const W = 600, H = 160, N = 60;
    const pts = hist.slice(-N);
    let maxB = 0, totalC = 0, totalU = 0, hits = 0, misses = 0;
    for (const p of pts) {
      const b = (p.bytes_cache || 0) + (p.bytes_upstream || 0);
      if (b > maxB) maxB = b;
      totalC += p.bytes_cache || 0; totalU += p.bytes_upstream || 0;
      hits += p.hits || 0; misses += p.misses || 0;
    }
    const summary = t('chart.summary', {
      c: fmtBytes(totalC), u: fmtBytes(totalU),
      r: hits + misses > 0 ? fmtPct(hits / (hits + misses)) : '—',
    });
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': summary, class: 'chartsvg' });
    for (const f of [0.25, 0.5, 0.75]) svg.append(s('line', { x1: 0, x2: W, y1: H * f, y2: H * f, class: 'grid' }));
    const bw = W / N, off = N - pts.length;
    const scale = maxB > 0 ? (H - 4) / maxB : 0;
    let path = '', pen = false;
    pts.forEach((p, i) => {
      const x = (off + i) * bw;
      const hc = (p.bytes_cache || 0) * scale, hu = (p.bytes_upstream || 0) * scale;
      const g = s('g', null, s('title', null, t('chart.tip', {
        time: new Date(p.t_ms || 0).toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' }),
        c: fmtBytes(p.bytes_cache || 0), u: fmtBytes(p.bytes_upstream || 0),
        hit: fmtNum(p.hits || 0), miss: fmtNum(p.misses || 0),
      })));
      g.append(s('rect', { x: x + 0.5, y: 0, width: Math.max(bw - 1, 1), height: H, class: 'hover' }));
      if (hc > 0) g.append(s('rect', { x: x + 0.5, y: H - hc, width: Math.max(bw - 1, 1), height: hc, class: 'b-cache' }));
      if (hu > 0) g.append(s('rect', { x: x + 0.5, y: H - hc - hu, width: Math.max(bw - 1, 1), height: hu, class: 'b-up' }));
      svg.append(g);
      const n = (p.hits || 0) + (p.misses || 0);
      if (n > 0) {
        const y = 2 + (1 - (p.hits || 0) / n) * (H - 4);
        // "l0.01 0": a lone minute still shows as a dot (round caps).
        path += (pen ? 'L' : 'M') + (x + bw / 2).toFixed(1) + ' ' + y.toFixed(1) + (pen ? '' : 'l0.01 0');
        pen = true;
      } else {
        pen = false;
      }
    });
    if (path) svg.append(s('path', { d: path, class: 'ratio' }));
    box.replaceChildren(
      h('div', { class: 'legend' },
        h('span', { class: 'key k-cache' }, t('chart.cache')),
        h('span', { class: 'key k-up' }, t('chart.upstream')),
        h('span', { class: 'key k-ratio' }, t('chart.ratio'))),
      h('div', { class: 'plot' },
        h('div', { class: 'yaxis' }, h('span', null, t('chart.perminute', { b: fmtBytes(maxB) })), h('span', null, '100%')),
        svg,
        h('div', { class: 'xaxis' }, h('span', null, t('chart.ago')), h('span', null, t('chart.now')))),
      h('p', { class: 'muted small' }, summary));
  }

  function renderInflight(list) {
    if (list.length === 0) return h('p', { class: 'muted empty' }, t('inflight.none'));
    return h('ul', { class: 'xfers' }, list.map((d) => {
      const total = isNum(d.total) && d.total >= 0 ? d.total : null;
      const pct = total ? (100 * (d.bytes || 0)) / total : null;
      return h('li', { class: 'xfer', 'data-digest': d.digest || '' },
        h('div', { class: 'xfer-head' },
          h('a', { href: repoHref(d.repository || '') }, d.repository || '—'), ' ', digestEl(d.digest)),
        meter(pct, t('inflight.progress', { what: d.repository || '' })),
        h('div', { class: 'muted small' }, t('inflight.line', {
          done: fmtBytes(d.bytes), total: total === null ? '?' : fmtBytes(total),
          pct: pct === null ? '' : ' (' + pct.toFixed(0) + '%)', rate: fmtRate(d.rate_bps),
          waiters: fmtNum(d.waiters), since: fmtAgo(d.started_ms),
        })));
    }));
  }

  function renderUpstreams(list) {
    if (list.length === 0) return h('p', { class: 'muted' }, t('up.none'));
    const cols = [
      { label: t('up.name') }, { label: t('up.health') }, { label: t('up.latency'), cls: 'num' },
      { label: t('up.requests'), cls: 'num' }, { label: t('up.errors'), cls: 'num' },
      { label: t('up.last_ok') }, { label: t('up.last_error') }, { label: t('up.ratelimit'), cls: 'num' },
    ];
    const rows = list.map((u) => ({
      attrs: { 'data-name': u.name || '' },
      cells: [
        h('div', null, h('strong', null, u.name || '—'), h('div', { class: 'muted small break' }, u.url || '')),
        u.healthy === false ? badge(t('up.down'), 'bad') : u.healthy === true ? badge(t('up.ok'), 'ok') : badge(t('up.unknown')),
        isNum(u.latency_ms) && u.latency_ms >= 0 ? t('ms', { n: fmtNum(Math.round(u.latency_ms)) }) : '—',
        fmtNum(u.requests), fmtNum(u.errors),
        timeEl(u.last_ok_ms),
        u.last_error_ms ? h('div', null, timeEl(u.last_error_ms), u.last_error ? h('div', { class: 'small break' }, u.last_error) : null) : t('never'),
        isNum(u.ratelimit_remaining) && u.ratelimit_remaining >= 0 ? fmtNum(u.ratelimit_remaining) : '—',
      ],
    }));
    const errs = list.filter((u) => arr(u.recent_errors).length > 0);
    return h('div', null, table(cols, rows, { id: 'upstreams', caption: t('dash.upstreams') }),
      errs.map((u) => h('details', { class: 'errs' },
        h('summary', null, t('up.recent_errors', { name: u.name, n: arr(u.recent_errors).length })),
        h('ul', null, arr(u.recent_errors).map((e) => h('li', null, timeEl(e.t_ms), ' ', h('span', { class: 'break' }, e.message || '')))))));
  }

  function renderEvents(list) {
    if (list.length === 0) return h('p', { class: 'muted empty' }, t('events.none'));
    const kinds = { fetch: 'ok', evict: 'warn', error: 'bad', prefetch: 'info', gc: 'warn' };
    const cols = [{ label: t('ev.time') }, { label: t('ev.kind') }, { label: t('ev.repo') }, { label: t('ev.detail') }];
    return table(cols, list.map((e) => [
      timeEl(e.t_ms),
      badge(t('ev.kind.' + e.kind) === 'ev.kind.' + e.kind ? String(e.kind) : t('ev.kind.' + e.kind), kinds[e.kind] || ''),
      e.repository ? h('a', { href: repoHref(e.repository) }, e.repository) : '—',
      h('div', { class: 'break' }, e.digest ? digestEl(e.digest) : null, e.digest ? ' ' : null,
        e.message || '', isNum(e.bytes) && e.bytes > 0 ? ' · ' + fmtBytes(e.bytes) : ''),
    ]), { id: 'events', caption: t('dash.events') });
  }

  const errText = (e) => (typeof e === 'string' ? e : e && typeof e === 'object'
    ? [e.image, e.message || e.error].filter(Boolean).join(': ') || JSON.stringify(e) : String(e));

  function renderPrefetch(jobs) {
    if (jobs === null) return h('p', { class: 'muted' }, t('pf.unavailable'));
    if (jobs.length === 0) return h('p', { class: 'muted empty' }, t('pf.none'));
    return table(
      [{ label: t('pf.state') }, { label: t('pf.images') }, { label: t('pf.progress') }, { label: t('pf.started') }],
      jobs.slice(0, 10).map((j) => {
        const n = arr(j.images).length, done = (j.done || 0) + (j.failed || 0);
        const state = String(j.state || '');
        return {
          attrs: { 'data-id': j.id || '', 'data-state': state },
          cells: [
            badge(t('pf.st.' + state) === 'pf.st.' + state ? state : t('pf.st.' + state),
              state === 'failed' ? 'bad' : state === 'done' ? 'ok' : 'info'),
            h('div', { class: 'break' }, arr(j.images).join(', '),
              arr(j.errors).length ? h('div', { class: 'small error-text' }, arr(j.errors).map(errText).join('; ')) : null),
            h('div', null, meter(n > 0 ? (100 * done) / n : null, t('pf.progress')),
              h('span', { class: 'small muted' }, t('pf.count', { done: fmtNum(j.done || 0), failed: fmtNum(j.failed || 0), n: fmtNum(n) }),
                isNum(j.bytes) && j.bytes > 0 ? ' · ' + fmtBytes(j.bytes) : '',
                j.current ? ' · ' + String(j.current) : '')),
            timeEl(j.started_ms),
          ],
        };
      }), { id: 'prefetch' });
  }

  /* The form outlives re-renders (polling, the token prompt): its state
   * lives here. */
  const pfDraft = { open: false, images: '', platforms: '', result: null };
  function prefetchForm(ctx) {
    const images = h('textarea', { id: 'pf-images', rows: '3', placeholder: 'nginx:1.25\nregistry.k8s.io/pause:3.9', spellcheck: 'false' });
    const plats = h('input', { id: 'pf-platforms', type: 'text', placeholder: 'linux/amd64, linux/arm64', spellcheck: 'false' });
    images.value = pfDraft.images;
    plats.value = pfDraft.platforms;
    images.addEventListener('input', () => { pfDraft.images = images.value; });
    plats.addEventListener('input', () => { pfDraft.platforms = plats.value; });
    const out = h('div', { 'aria-live': 'polite', id: 'pf-result' });
    if (pfDraft.result) out.append(pfDraft.result);
    const form = h('form', { class: 'stack' },
      h('label', { for: 'pf-images' }, t('pf.images.label')), images,
      h('label', { for: 'pf-platforms' }, t('pf.platforms.label')), plats,
      h('p', { class: 'muted small' }, t('pf.token.note')),
      h('div', null, h('button', { type: 'submit' }, t('pf.start'))), out);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const list = images.value.split(/[\s,]+/).filter(Boolean);
      const say = (el) => { pfDraft.result = el; out.replaceChildren(el); };
      if (list.length === 0) { say(h('p', { class: 'error' }, t('pf.empty'))); return; }
      const body = { images: list };
      const p = plats.value.split(/[\s,]+/).filter(Boolean);
      if (p.length) body.platforms = p;
      try {
        const r = await api('/api/v1/prefetch', { method: 'POST', body, signal: ctx.ac.signal });
        say(h('p', { class: 'ok-text' }, t('pf.queued', { id: r.id || '' })));
        images.value = '';
        pfDraft.images = '';
      } catch (e) {
        if (e.name !== 'AbortError') say(errorBox(e));
      }
    });
    const det = h('details', { class: 'pfform' }, h('summary', null, t('pf.new')), form);
    if (pfDraft.open) det.open = true;
    det.addEventListener('toggle', () => { pfDraft.open = det.open; });
    return det;
  }

  // ---------------------------------------------------------- repositories
  function viewRepos(view, ctx, query) {
    let q = query.get('q') || '';
    let up = query.get('upstream') || '';
    let page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
    view.append(h('h1', { tabindex: '-1' }, t('repos.title')));
    const input = h('input', { id: 'repo-q', type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: t('repos.search.ph'), 'aria-controls': 'repo-results', maxlength: '255' });
    input.value = q;
    const sel = h('select', { id: 'repo-up' }, h('option', { value: '' }, t('repos.all')));
    const form = h('form', { role: 'search', class: 'toolbar', onsubmit: (e) => { e.preventDefault(); go(1, true); } },
      h('div', { class: 'field grow' }, h('label', { for: 'repo-q' }, t('repos.search')), input),
      h('div', { class: 'field' }, h('label', { for: 'repo-up' }, t('repos.upstream')), sel));
    const status = h('p', { class: 'muted', id: 'repo-status', 'aria-live': 'polite' });
    const results = h('div', { id: 'repo-results' });
    const pager = h('nav', { class: 'pager', 'aria-label': t('pager.label') });
    view.append(form, status, results, pager);

    api('/api/v1/upstreams', { signal: ctx.ac.signal }).then((r) => {
      for (const u of arr(r.upstreams)) if (u.name) sel.append(h('option', { value: u.name }, u.name));
      if (up && ![...sel.options].some((o) => o.value === up)) sel.append(h('option', { value: up }, up));
      sel.value = up;
    }).catch(() => {
      if (up) { sel.append(h('option', { value: up }, up)); sel.value = up; }
    });

    let seq = 0, inner = null;
    function syncUrl(push) {
      const p = new URLSearchParams();
      if (q) p.set('q', q);
      if (up) p.set('upstream', up);
      if (page > 1) p.set('page', String(page));
      const hash = '#/repos' + (p.toString() ? '?' + p : '');
      if (hash !== location.hash) history[push ? 'pushState' : 'replaceState'](null, '', hash);
    }
    async function load() {
      const my = ++seq;
      if (inner) inner.abort();
      inner = new AbortController();
      ctx.ac.signal.addEventListener('abort', () => inner && inner.abort(), { once: true });
      const p = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
      if (q) p.set('q', q);
      if (up) p.set('upstream', up);
      results.setAttribute('aria-busy', 'true');
      try {
        const r = await api('/api/v1/repositories?' + p, { signal: inner.signal });
        if (my !== seq) return;
        renderRepoList(r);
      } catch (e) {
        if (e.name === 'AbortError' || my !== seq) return;
        results.replaceChildren(errorBox(e));
        status.textContent = '';
        pager.replaceChildren();
      } finally {
        if (my === seq) results.removeAttribute('aria-busy');
      }
    }
    function go(p, push) { page = p; syncUrl(push); load(); }
    function renderRepoList(r) {
      const total = isNum(r.total) ? r.total : 0;
      const per = isNum(r.per_page) && r.per_page > 0 ? r.per_page : PER_PAGE;
      const pages = Math.max(1, Math.ceil(total / per));
      const list = arr(r.repositories);
      status.textContent = q ? t('repos.count.q', { n: fmtNum(total), q }) : plural(total, 'repos.count.1', 'repos.count');
      status.dataset.raw = String(total);
      if (list.length === 0) {
        results.replaceChildren(h('p', { class: 'empty' }, q ? t('repos.nomatch', { q }) : t('repos.empty')));
      } else {
        const cols = [{ label: t('col.name') }, { label: t('col.upstream') }, { label: t('col.tags'), cls: 'num' },
          { label: t('col.size'), cls: 'num' }, { label: t('col.last_pulled') }, { label: t('col.pulls'), cls: 'num' }];
        results.replaceChildren(table(cols, list.map((x) => ({
          attrs: { 'data-name': x.name || '' },
          cells: [h('a', { href: repoHref(x.name || '') }, highlight(x.name || '', q)), x.upstream || '—',
            fmtNum(x.tags), fmtBytes(x.size_bytes), timeEl(x.last_pulled_ms), fmtNum(x.pull_count)],
        })), { id: 'repos', caption: t('repos.title') }));
      }
      pager.replaceChildren(
        h('button', { type: 'button', disabled: page <= 1, onclick: () => go(page - 1, true) }, t('pager.prev')),
        h('span', { class: 'muted', 'data-raw': page }, t('pager.page', { p: fmtNum(page), n: fmtNum(pages) })),
        h('button', { type: 'button', disabled: page >= pages, onclick: () => go(page + 1, true) }, t('pager.next')));
    }
    input.addEventListener('input', debounce(250, () => {
      const v = input.value.trim();
      if (v === q) return;
      q = v; page = 1; syncUrl(false); load();
    }));
    sel.addEventListener('change', () => { up = sel.value; page = 1; syncUrl(false); load(); });
    load();
  }

  /* name with the (case-insensitive) matches of q in <mark> — as DOM nodes. */
  function highlight(name, q) {
    if (!q) return name;
    const out = [], lower = name.toLowerCase(), lq = q.toLowerCase();
    let i = 0;
    for (;;) {
      const j = lower.indexOf(lq, i);
      if (j < 0) break;
      if (j > i) out.push(name.slice(i, j));
      out.push(h('mark', null, name.slice(j, j + q.length)));
      i = j + q.length;
    }
    if (i < name.length) out.push(name.slice(i));
    return out;
  }

  // ------------------------------------------------------------ repository
  function crumbs(...items) {
    return h('nav', { class: 'crumbs', 'aria-label': t('crumbs') },
      h('ol', null, items.map(([label, href]) => h('li', null, href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label)))));
  }

  /* One repository's tags, a page of TAGS_PER_PAGE at a time (a
   * repository can hold thousands of tags). */
  const TAGS_PER_PAGE = 100;
  function viewRepo(view, ctx, name, query) {
    let page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
    view.append(crumbs([t('nav.repos'), '#/repos'], [name]),
      h('h1', { tabindex: '-1', class: 'break' }, name));
    const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, t('loading')));
    const pager = h('nav', { class: 'pager', 'aria-label': t('pager.label') });
    view.append(body, pager);
    const cols = [{ label: t('col.tag') }, { label: t('col.digest') }, { label: t('col.size'), cls: 'num' },
      { label: t('col.platforms') }, { label: t('col.fetched') }, { label: t('col.checked') },
      { label: t('col.last_pulled') }, { label: t('col.pulls'), cls: 'num' }, { label: t('col.state') }];
    async function load() {
      body.setAttribute('aria-busy', 'true');
      try {
        const p = new URLSearchParams({ page: String(page), per_page: String(TAGS_PER_PAGE) });
        const r = await api('/api/v1/repositories/' + apiName(name) + '/tags?' + p, { signal: ctx.ac.signal });
        const tags = arr(r.tags);
        const total = isNum(r.total) ? r.total : tags.length;
        const per = isNum(r.per_page) && r.per_page > 0 ? r.per_page : TAGS_PER_PAGE;
        const pages = Math.max(1, Math.ceil(total / per));
        body.replaceChildren(
          h('p', { class: 'muted', 'data-raw': total }, plural(total, 'tags.count.1', 'tags.count'),
            r.upstream ? ' · ' + t('repo.from', { up: r.upstream }) : ''),
          tags.length === 0 ? h('p', { class: 'empty' }, t('tags.none')) :
            table(cols, tags.map((x) => ({
              attrs: { 'data-tag': x.tag || '' },
              cells: [
                x.digest ? h('a', { href: imageHref(name, x.digest, x.tag) }, h('strong', null, x.tag || '—')) : (x.tag || '—'),
                x.digest ? h('a', { href: imageHref(name, x.digest, x.tag) }, digestEl(x.digest)) : '—',
                fmtBytes(x.size),
                arr(x.platforms).length ? h('span', { class: 'chips' }, arr(x.platforms).map((pl) => h('span', { class: 'chip' }, pl))) : h('span', { class: 'muted' }, t('single')),
                timeEl(x.fetched_ms), timeEl(x.checked_ms), timeEl(x.last_pulled_ms), fmtNum(x.pull_count),
                x.stale ? badge(t('tags.stale'), 'warn') : badge(t('tags.fresh'), 'ok'),
              ],
            })), { id: 'tags', caption: t('tags.caption', { name }) }));
        pager.replaceChildren();
        if (pages > 1) {
          const go = (n) => { page = n; history.pushState(null, '', repoHref(name) + (n > 1 ? '?page=' + n : '')); load(); };
          pager.append(
            h('button', { type: 'button', disabled: page <= 1, onclick: () => go(page - 1) }, t('pager.prev')),
            h('span', { class: 'muted' }, t('pager.page', { p: fmtNum(page), n: fmtNum(pages) })),
            h('button', { type: 'button', disabled: page >= pages, onclick: () => go(page + 1) }, t('pager.next')));
        }
      } catch (e) {
        if (e.name === 'AbortError') return;
        pager.replaceChildren();
        body.replaceChildren(e instanceof ApiError && e.status === 404
          ? h('div', { class: 'empty' }, h('p', null, t('repo.notcached', { name })),
            h('p', null, h('a', { href: '#/route?name=' + encodeURIComponent(name) }, t('repo.explain'))))
          : errorBox(e));
      } finally {
        body.removeAttribute('aria-busy');
      }
    }
    load();
  }

  // ----------------------------------------------------------------- image
  async function viewImage(view, ctx, name, digest, query) {
    const tag = query.get('tag') || '';
    view.append(crumbs([t('nav.repos'), '#/repos'], [name, repoHref(name)], [tag || shortDigest(digest)]),
      h('h1', { tabindex: '-1', class: 'break' }, name + (tag ? ':' + tag : '')),
      h('p', { class: 'muted break' }, h('code', null, digest)));
    const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, t('loading')));
    view.append(body);
    try {
      const im = await api('/api/v1/images/' + apiName(name) + '@' + encodeURIComponent(digest).replace('%3A', ':'), { signal: ctx.ac.signal });
      body.replaceChildren(...renderImage(im, name, digest, tag));
    } catch (e) {
      if (e.name === 'AbortError') return;
      body.replaceChildren(e instanceof ApiError && e.status === 404 ? h('p', { class: 'empty' }, t('image.notcached')) : errorBox(e));
    } finally {
      body.removeAttribute('aria-busy');
    }
  }

  function renderImage(im, name, digest, tag) {
    const out = [];
    const cfg = im.config || null;
    const layers = arr(im.layers);
    const layerTotal = layers.reduce((a, l) => a + (isNum(l.size) ? l.size : 0), 0);
    out.push(section(t('image.summary'), dl([
      [t('image.kind'), im.kind === 'index' ? t('image.kind.index') : t('image.kind.manifest'), 'kind'],
      arr(im.tags).length ? [t('image.tags'), h('span', { class: 'chips' }, arr(im.tags).map((x) => h('span', { class: 'chip' }, String(x)))), 'tags'] : null,
      [t('image.media_type'), h('code', { class: 'break' }, im.media_type || '—'), 'media_type'],
      [t('image.manifest_size'), fmtBytes(im.size), 'size'],
      im.kind === 'index' ? [t('image.platforms'), fmtNum(arr(im.platforms).length), 'n_platforms'] : null,
      layers.length ? [t('image.layers_total'), h('span', { 'data-raw': layerTotal }, fmtBytes(layerTotal) + ' · ' + plural(layers.length, 'layers.count.1', 'layers.count')), 'layers_total'] : null,
      cfg && (cfg.os || cfg.architecture) ? [t('image.osarch'), [cfg.os, cfg.architecture, cfg.variant].filter(Boolean).join('/'), 'osarch'] : null,
      cfg && cfg.created ? [t('image.created'), isoEl(cfg.created), 'created'] : null,
    ])));
    out.push(pullSection(im, name, digest, tag));
    if (im.kind === 'index' || arr(im.platforms).length) {
      const cols = [{ label: t('col.platform') }, { label: t('col.digest') }, { label: t('col.size'), cls: 'num' },
        { label: t('col.media_type') }, { label: t('col.cached') }];
      out.push(section(t('image.platforms'), table(cols, arr(im.platforms).map((p) => ({
        attrs: { 'data-platform': p.platform || '' },
        cells: [
          p.digest ? h('a', { href: imageHref(name, p.digest, tag) }, p.platform || '?') : (p.platform || '?'),
          digestEl(p.digest), fmtBytes(p.size), h('code', { class: 'small break' }, p.media_type || ''),
          p.cached ? badge(t('yes'), 'ok') : badge(t('no')),
        ],
      })), { id: 'platforms', caption: t('image.platforms') })));
    }
    if (layers.length || im.kind === 'manifest') {
      const cols = [{ label: '#', cls: 'num' }, { label: t('col.digest') }, { label: t('col.size'), cls: 'num' },
        { label: t('col.media_type') }, { label: t('col.cached') }];
      out.push(section(t('image.layers'), layers.length === 0 ? h('p', { class: 'muted' }, t('layers.none')) :
        table(cols, layers.map((l, i) => ({
          attrs: { 'data-digest': l.digest || '' },
          cells: [String(i + 1), digestEl(l.digest), h('span', { 'data-raw': l.size }, fmtBytes(l.size)),
            h('code', { class: 'small break' }, l.media_type || ''), l.cached ? badge(t('yes'), 'ok') : badge(t('no'))],
        })), { id: 'layers', caption: t('image.layers') })));
    }
    if (cfg) out.push(configSection(cfg));
    return out;
  }

  function pullSection(im, name, digest, tagIn) {
    let tag = tagIn;
    const host = location.host;
    const given = im.pull && typeof im.pull === 'object' ? im.pull : {};
    const byDigest = {
      docker: `docker pull ${host}/${name}@${digest}`,
      podman: `podman pull ${host}/${name}@${digest}`,
      ctr: `ctr images pull ${host}/${name}@${digest}`,
    };
    // The server's commands (they know public_url and plain-http flags)
    // win; "reference" is the bare name, not a command.
    for (const [k, v] of Object.entries(given)) if (k !== 'reference' && typeof v === 'string' && v) byDigest[k] = v;
    if (!tag && arr(im.tags).length) tag = String(im.tags[0]);
    const byTag = {};
    for (const k of Object.keys(byDigest)) byTag[k] = tag ? byDigest[k].split('@' + digest).join(':' + tag) : byDigest[k];
    const list = h('div', { class: 'pulls' });
    let mode = tag ? 'tag' : 'digest';
    const draw = () => {
      const cmds = mode === 'tag' ? byTag : byDigest;
      list.replaceChildren(...Object.keys(cmds).map((k) => h('div', { class: 'pull', 'data-client': k },
        h('div', { class: 'pull-label' }, k), codeBlock(cmds[k], { label: t('copy.what', { what: k }) }))));
    };
    draw();
    const switcher = tag ? h('div', { class: 'seg', role: 'group', 'aria-label': t('pull.by') },
      ['tag', 'digest'].map((m) => {
        const b = h('button', { type: 'button', 'aria-pressed': String(m === mode) }, t('pull.by.' + m));
        b.addEventListener('click', () => {
          mode = m;
          for (const x of b.parentNode.children) x.setAttribute('aria-pressed', String(x === b));
          draw();
        });
        return b;
      })) : null;
    return section(t('image.pull'), switcher, list, h('p', { class: 'muted small' }, t('pull.note')));
  }

  function configSection(cfg) {
    const list = (x) => (Array.isArray(x) && x.length ? h('code', { class: 'break' }, JSON.stringify(x)) : (typeof x === 'string' && x ? h('code', null, x) : '—'));
    const env = arr(cfg.env);
    const labels = cfg.labels && typeof cfg.labels === 'object' ? Object.entries(cfg.labels) : [];
    const hist = arr(cfg.history);
    return section(t('image.config'),
      dl([
        [t('cfg.digest'), cfg.digest ? digestEl(cfg.digest) : '—', 'config.digest'],
        [t('cfg.created'), isoEl(cfg.created), 'config.created'],
        [t('cfg.osarch'), [cfg.os, cfg.architecture, cfg.variant].filter(Boolean).join('/') || '—', 'config.osarch'],
        [t('cfg.entrypoint'), list(cfg.entrypoint), 'config.entrypoint'],
        [t('cfg.cmd'), list(cfg.cmd), 'config.cmd'],
        cfg.working_dir ? [t('cfg.workdir'), h('code', { class: 'break' }, String(cfg.working_dir)), 'config.working_dir'] : null,
        cfg.user ? [t('cfg.user'), h('code', null, String(cfg.user)), 'config.user'] : null,
        cfg.exposed_ports && typeof cfg.exposed_ports === 'object' && Object.keys(cfg.exposed_ports).length
          ? [t('cfg.ports'), Object.keys(cfg.exposed_ports).join(', '), 'config.exposed_ports'] : null,
      ]),
      h('h3', null, t('cfg.env')),
      env.length ? h('ul', { class: 'env', 'data-t': 'env' }, env.map((e) => h('li', null, h('code', { class: 'break' }, String(e))))) : h('p', { class: 'muted' }, '—'),
      h('h3', null, t('cfg.labels')),
      labels.length ? table([{ label: t('cfg.key') }, { label: t('cfg.value') }],
        labels.map(([k, v]) => [h('code', { class: 'break' }, k), h('span', { class: 'break' }, String(v))]), { id: 'labels' }) : h('p', { class: 'muted' }, '—'),
      h('h3', null, t('cfg.history')),
      hist.length ? table([{ label: '#', cls: 'num' }, { label: t('cfg.created') }, { label: t('cfg.created_by') }, { label: '' }],
        hist.map((x, i) => [String(i + 1), isoEl(x.created), h('code', { class: 'break small' }, x.created_by || ''),
          x.empty_layer ? badge(t('cfg.empty_layer')) : '']), { id: 'history' }) : h('p', { class: 'muted' }, '—'));
  }

  // ----------------------------------------------------------------- route
  /* "nginx:1.25" → {name: "nginx", ref: ":1.25"}; a colon before the last
   * slash is a port, not a tag. */
  function splitRef(input) {
    let name = input.trim(), ref = '';
    const at = name.indexOf('@');
    if (at >= 0) { ref = name.slice(at); name = name.slice(0, at); }
    const slash = name.lastIndexOf('/'), colon = name.lastIndexOf(':');
    if (colon > slash) { ref = name.slice(colon) + ref; name = name.slice(0, colon); }
    return { name, ref };
  }

  function viewRoute(view, ctx, query) {
    view.append(h('h1', { tabindex: '-1' }, t('route.title')), h('p', { class: 'muted' }, t('route.intro')));
    const input = h('input', { id: 'route-name', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'nginx, k8s.gcr.io/pause:3.9, quay.io/coreos/etcd', maxlength: '512' });
    input.value = query.get('name') || '';
    const ns = h('select', { id: 'route-ns' }, h('option', { value: '' }, t('route.ns.none')));
    const wantNs = query.get('ns') || '';
    const result = h('div', { id: 'route-result', 'aria-live': 'polite' });
    const form = h('form', { class: 'toolbar' },
      h('div', { class: 'field grow' }, h('label', { for: 'route-name' }, t('route.name')), input),
      h('div', { class: 'field' }, h('label', { for: 'route-ns' }, t('route.ns')), ns),
      h('div', { class: 'field end' }, h('button', { type: 'submit' }, t('route.go'))));
    view.append(form, result);
    api('/api/v1/upstreams', { signal: ctx.ac.signal }).then((r) => {
      for (const u of arr(r.upstreams)) {
        for (const n of [u.name].concat(arr(u.aliases))) if (n) ns.append(h('option', { value: n }, n));
      }
      ns.value = wantNs;
    }).catch(() => {});
    if (wantNs) { ns.append(h('option', { value: wantNs }, wantNs)); ns.value = wantNs; }

    let seq = 0;
    async function explain() {
      const raw = input.value.trim();
      if (!raw) return;
      const { name, ref } = splitRef(raw);
      const my = ++seq;
      const p = new URLSearchParams({ name: raw });
      if (ns.value) p.set('ns', ns.value);
      history.replaceState(null, '', '#/route?' + p);
      const ap = new URLSearchParams({ name });
      if (ns.value) ap.set('ns', ns.value);
      result.setAttribute('aria-busy', 'true');
      try {
        const r = await api('/api/v1/route?' + ap, { signal: ctx.ac.signal });
        if (my === seq) result.replaceChildren(renderRoute(r, ref));
      } catch (e) {
        if (e.name !== 'AbortError' && my === seq) result.replaceChildren(errorBox(e));
      } finally {
        if (my === seq) result.removeAttribute('aria-busy');
      }
    }
    form.addEventListener('submit', (e) => { e.preventDefault(); explain(); });
    if (input.value) explain();
  }

  /* The server says why in English ("why") and as a code ("why_code"):
   * the code is translated, the sentence kept as the detail. */
  function whyText(r) {
    const codes = { ns: 'why.ns', prefix: 'why.prefix', rewrite: 'why.rewrite', search: 'why.search' };
    const key = codes[String(r.why_code || '')];
    const main = key ? t(key) : '';
    const rw = r.rewrite && typeof r.rewrite === 'object' ? r.rewrite : null;
    return h('span', null, main,
      rw ? h('span', null, ' ', h('code', { class: 'break' }, String(rw.match || '') + ' → ' + String(rw.target || ''))) : null,
      key ? null : String(r.why || '—'));
  }

  function renderRoute(r, ref) {
    const cands = arr(r.candidates);
    const decided = r.decided && typeof r.decided === 'object' ? r.decided : null;
    const fixed = r.kind === 'fixed';
    const target = decided || (fixed && cands[0] ? { upstream: cands[0].upstream, canonical: cands[0].canonical } : null);
    const box = h('div', { class: 'panel answer', 'data-kind': r.kind || '' });
    if (r.kind === 'none') {
      box.append(h('p', { class: 'big' }, t('route.none')), h('p', { class: 'muted' }, String(r.why || '')));
      return box;
    }
    if (target) {
      box.append(h('p', { class: 'big' }, t('route.goes'), ' ',
        h('strong', { 'data-k': 'upstream' }, target.upstream || '?')),
      h('p', null, t('route.as'), ' ', h('code', { 'data-k': 'canonical', class: 'break' }, (target.canonical || '') + ref)));
    } else {
      box.append(h('p', { class: 'big' }, t('route.undecided')));
    }
    box.append(dl([
      [t('route.kind'), fixed ? t('route.kind.fixed') : r.kind === 'search' ? t('route.kind.search') : String(r.kind || '—'), 'kind'],
      [t('route.why'), h('span', { 'data-raw': r.why_code || r.why || '' }, whyText(r)), 'why'],
      decided && decided.source === 'remembered' ? [t('route.decision'), t('route.remembered'), 'source'] : null,
      r.ns ? [t('route.ns'), r.ns, 'ns'] : null,
    ]));
    if (cands.length) {
      box.append(h('h3', null, fixed ? t('route.cands.fixed') : t('route.cands.search')),
        table([{ label: '#', cls: 'num' }, { label: t('col.upstream') }, { label: t('route.remote') }, { label: t('route.canonical') }, { label: t('col.state') }],
          cands.map((c, i) => ({
            attrs: { 'data-upstream': c.upstream || '' },
            cells: [String(i + 1), c.upstream || '—', h('code', { class: 'break' }, c.remote || ''), h('code', { class: 'break' }, c.canonical || ''),
              c.negative ? badge(t('route.negative'), 'warn') : decided && decided.upstream === c.upstream ? badge(t('route.chosen'), 'ok') : ''],
          })), { id: 'candidates' }));
    }
    if (target && target.canonical) {
      box.append(h('h3', null, t('image.pull')), codeBlock(`docker pull ${location.host}/${target.canonical}${ref || ''}`));
    }
    return box;
  }

  // ----------------------------------------------------------------- setup
  function viewSetup(view, ctx, query) {
    let which = CLIENTS.includes(query.get('for')) ? query.get('for') : 'docker';
    view.append(h('h1', { tabindex: '-1' }, t('setup.title')),
      h('p', null, t('setup.intro'), ' ', h('code', { 'data-k': 'origin' }, location.origin)));
    const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': t('setup.clients') });
    const panel = h('div', { class: 'tabpanel', role: 'tabpanel', id: 'setup-panel', tabindex: '0' });
    const buttons = CLIENTS.map((c) => {
      const b = h('button', { type: 'button', role: 'tab', id: 'tab-' + c, 'aria-controls': 'setup-panel', 'data-client': c }, t('client.' + c));
      b.addEventListener('click', () => select(c, true));
      b.addEventListener('keydown', (e) => {
        const i = CLIENTS.indexOf(c);
        const j = e.key === 'ArrowRight' ? (i + 1) % CLIENTS.length : e.key === 'ArrowLeft' ? (i + CLIENTS.length - 1) % CLIENTS.length : -1;
        if (j >= 0) { e.preventDefault(); select(CLIENTS[j], true); buttons[j].focus(); }
      });
      return b;
    });
    tabs.append(...buttons);
    view.append(tabs, panel);
    let seq = 0;
    async function select(c, fromUser) {
      which = c;
      buttons.forEach((b) => {
        const on = b.dataset.client === c;
        b.setAttribute('aria-selected', String(on));
        b.tabIndex = on ? 0 : -1;
      });
      panel.setAttribute('aria-labelledby', 'tab-' + c);
      if (fromUser) history.replaceState(null, '', '#/setup?for=' + c);
      const my = ++seq;
      panel.replaceChildren(h('p', { class: 'muted' }, t('loading')));
      let cfg = null, generated = false;
      try {
        cfg = await api('/api/v1/client-config?for=' + encodeURIComponent(c), { signal: ctx.ac.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 501)) {
          if (my === seq) panel.replaceChildren(errorBox(e));
          return;
        }
        let ups = null;
        try { ups = arr((await api('/api/v1/upstreams', { signal: ctx.ac.signal })).upstreams); } catch (e2) { ups = null; }
        cfg = localClientConfig(c, ups);
        generated = true;
      }
      if (my !== seq) return;
      panel.replaceChildren(renderClientConfig(cfg, generated));
    }
    select(which, false);
  }

  function renderClientConfig(cfg, generated) {
    const files = arr(cfg.files), cmds = arr(cfg.commands);
    return h('div', { 'data-source': generated ? 'browser' : 'server' },
      generated ? h('p', { class: 'note' }, t('setup.generated')) : null,
      files.length ? h('h2', null, t('setup.files')) : null,
      files.map((f) => h('div', { class: 'file', 'data-path': f.path || '' }, codeBlock(String(f.content || ''), { title: f.path || '' }))),
      cmds.length ? h('h2', null, t('setup.commands')) : null,
      cmds.length ? codeBlock(cmds.map(String).join('\n')) : null,
      cfg.notes ? h('p', { class: 'muted' }, String(cfg.notes)) : null);
  }

  /* Snippets built here when the server has no client-config endpoint.
   * The mirror serves any upstream under /<upstream>/<name> and honours
   * containerd's ?ns=; Docker's registry-mirrors covers Docker Hub only. */
  function localClientConfig(which, ups) {
    const origin = location.origin, host = location.host, insecure = location.protocol === 'http:';
    const list = ups && ups.length ? ups.map((u) => ({ name: u.name, aliases: arr(u.aliases) }))
      : [{ name: 'docker.io', aliases: [] }, { name: 'registry.k8s.io', aliases: ['k8s.gcr.io'] }, { name: 'quay.io', aliases: [] }, { name: 'gcr.io', aliases: [] }, { name: 'ghcr.io', aliases: [] }];
    const names = [];
    for (const u of list) for (const n of [u.name].concat(u.aliases)) if (n && !names.includes(n)) names.push(n);
    const realServer = (n) => (n === 'docker.io' ? 'https://registry-1.docker.io' : 'https://' + n);
    const canonicalOf = (n) => (list.find((u) => u.name === n || u.aliases.includes(n)) || { name: n }).name;
    const files = [], commands = [];
    switch (which) {
      case 'docker': {
        const d = { 'registry-mirrors': [origin] };
        if (insecure) d['insecure-registries'] = [host];
        files.push({ path: '/etc/docker/daemon.json', content: JSON.stringify(d, null, 2) + '\n' });
        commands.push('sudo systemctl restart docker', `docker pull ${host}/registry.k8s.io/pause:3.9   # other registries: prefix the name`);
        break;
      }
      case 'containerd':
        for (const n of names) {
          files.push({ path: `/etc/containerd/certs.d/${n}/hosts.toml`, content: `server = "${realServer(n)}"\n\n[host."${origin}"]\n  capabilities = ["pull", "resolve"]\n` });
        }
        files.push({ path: '/etc/containerd/config.toml', content: '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n' });
        commands.push('sudo systemctl restart containerd', 'ctr images pull --hosts-dir /etc/containerd/certs.d docker.io/library/alpine:latest');
        break;
      case 'crio':
      case 'podman': {
        let conf = '';
        for (const n of names) {
          conf += `[[registry]]\nprefix = "${n}"\nlocation = "${n}"\n\n[[registry.mirror]]\nlocation = "${host}/${canonicalOf(n)}"\n` + (insecure ? 'insecure = true\n' : '') + '\n';
        }
        files.push({ path: '/etc/containers/registries.conf.d/50-ocimirror.conf', content: conf });
        commands.push(which === 'crio' ? 'sudo systemctl restart crio' : 'podman pull docker.io/library/alpine:latest');
        break;
      }
      case 'k3s': {
        let y = 'mirrors:\n';
        for (const n of names) y += `  "${n}":\n    endpoint:\n      - "${origin}"\n`;
        files.push({ path: '/etc/rancher/k3s/registries.yaml', content: y });
        commands.push('sudo systemctl restart k3s');
        break;
      }
      case 'kubeadm':
        files.push({ path: 'kubeadm-config.yaml', content: `apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nimageRepository: "${host}/registry.k8s.io"\n` });
        commands.push(`kubeadm config images pull --image-repository ${host}/registry.k8s.io`);
        break;
      default:
        break;
    }
    return { for: which, files, commands };
  }

  // ------------------------------------------------------------- not found
  function viewNotFound(view) {
    view.append(h('h1', { tabindex: '-1' }, t('notfound.title')), h('p', null, h('a', { href: '#/' }, t('notfound.home'))));
  }

  // ----------------------------------------------------------------- shell
  function parseHash() {
    let raw = location.hash.replace(/^#/, '');
    if (!raw.startsWith('/')) raw = '/' + raw;
    const qi = raw.indexOf('?');
    return { path: qi < 0 ? raw : raw.slice(0, qi), query: new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1)) };
  }

  const TITLES = { dashboard: 'nav.dashboard', repos: 'nav.repos', route: 'nav.route', setup: 'nav.setup' };
  let firstRoute = true;
  function route() {
    const { path, query } = parseHash();
    const ctx = newContext();
    const view = document.getElementById('view');
    view.replaceChildren();
    let page = null, title = null, m;
    try {
      if (path === '/' || path === '') { page = 'dashboard'; viewDashboard(view, ctx); }
      else if (path === '/repos') { page = 'repos'; viewRepos(view, ctx, query); }
      else if ((m = path.match(/^\/r\/(.+)$/))) { page = 'repos'; title = decName(m[1]); viewRepo(view, ctx, title, query); }
      else if ((m = path.match(/^\/i\/(.+)@([A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$/))) {
        page = 'repos'; title = decName(m[1]); viewImage(view, ctx, title, m[2], query);
      } else if (path === '/route') { page = 'route'; viewRoute(view, ctx, query); }
      else if (path === '/setup') { page = 'setup'; viewSetup(view, ctx, query); }
      else viewNotFound(view);
    } catch (e) {
      // A malformed %-escape in a hand-typed URL.
      view.replaceChildren();
      viewNotFound(view);
    }
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = (title || (page ? t(TITLES[page]) : t('notfound.title'))) + ' · ' + t('brand');
    if (!firstRoute) {
      const h1 = view.querySelector('h1');
      if (h1) h1.focus({ preventScroll: true });
      window.scrollTo(0, 0);
    }
    firstRoute = false;
  }

  function setVersion(v) {
    const el = document.getElementById('version');
    if (el && v) el.textContent = 'ocimirror ' + v;
  }

  /* Static text in index.html carries data-i18n="key". */
  function applyStatic() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    const sel = document.getElementById('lang');
    if (sel) sel.value = lang;
  }

  function setLang(l, save) {
    if (!DICT[l]) return;
    lang = l;
    if (save) setSaved('local', 'om.lang', l);
    applyStatic();
    route();
  }

  function showAuth() {
    const box = document.getElementById('auth');
    if (!box || !box.hidden) return;
    box.hidden = false;
    const inp = document.getElementById('auth-token');
    if (inp) inp.focus();
  }

  function initShell() {
    const sel = document.getElementById('lang');
    sel.replaceChildren(...LANGS.map((l) => h('option', { value: l }, DICT[l]['lang.name'])));
    sel.addEventListener('change', () => setLang(sel.value, true));
    document.getElementById('skip').addEventListener('click', (e) => {
      e.preventDefault();
      const h1 = document.querySelector('#view h1');
      (h1 || document.getElementById('view')).focus();
    });
    const form = document.getElementById('auth-form');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = document.getElementById('auth-token').value.trim();
      setSaved('session', 'om.token', v || null);
      document.getElementById('auth').hidden = true;
      route();
    });
    document.getElementById('auth-cancel').addEventListener('click', () => { document.getElementById('auth').hidden = true; });
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => { /* polls resume on their next tick */ });
  }

  lang = pickLang();
  initShell();
  applyStatic();
  route();
  api('/api/v1/stats').then((st) => setVersion(st.version)).catch(() => {});
  // Exposed for tests and the curious; not an API.
  window.omUI = { t, get lang() { return lang; }, setLang, fmtBytes, fmtPct, fmtNum };
})();
