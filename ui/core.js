/* core.js — what every page of the web UI shares (loaded first, after
 * i18n.js): the language and t()/tx(), building DOM nodes (h(), never
 * markup), formatting, the API client, view contexts (timers and fetches
 * cancelled on navigation), copy buttons, tables.  Exposed as window.OM;
 * the pages (dashboard.js, browse.js, tools.js) register themselves in
 * OM.views, codes.js renders the server's codes (OM.codes), and app.js is
 * the shell that routes.
 *
 * Rules the UI keeps:
 *  - Text from the API only ever enters the page as text (textContent, text
 *    nodes via h()); there is no innerHTML anywhere.  The server's CSP also
 *    forbids inline script, so a slip could not run code.
 *  - Every string a person reads comes from the dictionary in i18n.js
 *    (t(), tx()).  The server sends codes and values, never prose for the
 *    page: codes.js turns them into sentences.  Values that are data (names,
 *    tags, digests, URLs) are marked translate="no" (lit(), <code>).
 *  - Nothing is loaded whole: lists are paged by the server; polling stops
 *    when the page changes and pauses while the tab is hidden.
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

  /* tx('key', {name: lit(x), n: 3}) → the string as a list of text and
   * nodes: a parameter that is a node (a literal value, a link) is put in
   * as it is, anything else as text. */
  function tx(key, params) {
    let str = DICT[lang][key];
    if (str === undefined) str = DICT.en[key];
    if (str === undefined) str = key;
    const out = [], used = new Set();
    let last = 0;
    str.replace(/\{(\w+)\}/g, (m, k, at) => {
      if (at > last) out.push(str.slice(last, at));
      const v = params && k in params ? params[k] : m;
      // A node used twice ({file} ... {file}) is put in as a copy.
      out.push(v instanceof Node ? (used.has(k) ? v.cloneNode(true) : v) : String(v));
      used.add(k);
      last = at + m.length;
      return m;
    });
    if (last < str.length) out.push(str.slice(last));
    return out;
  }

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
  /* A value that is data, not prose — a name, a tag, a URL, a platform —
   * marked translate="no" (for translation tools, and for the test that
   * checks no English prose is left in the Chinese page). */
  function lit(x, attrs) { return h('span', Object.assign({ translate: 'no', class: 'lit' }, attrs || {}), x === null || x === undefined ? '' : String(x)); }

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

  /* An API error for a person: the status and what its OCI code means in
   * the reader's language.  The server's own sentence is English: shown as
   * the message in English, and kept verbatim (marked as such) in Chinese. */
  function errorBox(e) {
    let msg, original = null;
    if (e instanceof ApiError) {
      if (e.status === 401) msg = t('err.401');
      else if (e.status === 403) msg = t('err.403');
      else if (e.status === 0) msg = t('err.network');
      else if (lang === 'en') msg = t('err.api', { status: e.status, message: e.message });
      else {
        const known = DICT[lang]['apierr.' + e.code];
        msg = t('err.api', { status: e.status, message: known || t('apierr.other', { code: e.code }) });
        if (e.message) original = e.message;
      }
    } else {
      msg = t('err.generic', { message: e && e.message ? e.message : String(e) });
    }
    return h('div', { class: 'error', role: 'alert' }, h('p', null, msg),
      original ? h('details', { class: 'original' }, h('summary', null, t('err.original')), h('p', null, lit(original))) : null);
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
  function crumbs(...items) {
    return h('nav', { class: 'crumbs', 'aria-label': t('crumbs') },
      h('ol', null, items.map(([label, href]) => h('li', { translate: href === '#/repos' ? null : 'no' },
        href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label)))));
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

  function setVersion(v) {
    const el = document.getElementById('version');
    if (el && v) el.textContent = 'ocimirror ' + v;
  }

  function showAuth() {
    const box = document.getElementById('auth');
    if (!box || !box.hidden) return;
    box.hidden = false;
    const inp = document.getElementById('auth-token');
    if (inp) inp.focus();
  }

  window.OM = {
    DICT, LANGS, PER_PAGE, CLIENTS, views: {},
    get lang() { return lang; }, set lang(l) { lang = l; },
    getSaved, setSaved, pickLang, t, tx, locale, h, s, lit,
    isNum, fmtNum, fmtBytes, fmtPct, fmtRate, fmtDuration, fmtAgo, fmtDate, timeEl, isoEl, shortDigest, digestEl,
    encName, decName, repoHref, imageHref, apiName, ApiError, api, errorBox,
    newContext, later, poll, debounce, copyText, copyButton, codeBlock, announce,
    section, table, badge, dl, arr, plural, crumbs, renderSafely, setVersion, showAuth,
  };
})();
