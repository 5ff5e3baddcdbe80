/* dashboard.js — the dashboard (#/): figures, the traffic chart,
 * downloads in flight, upstream health, prefetch jobs and the form to
 * start one, recent events (one row per pull of one image).  Each panel
 * polls its endpoint on its own timer (core.js poll()). */
'use strict';

(() => {
  const OM = window.OM;
  const {
    t, tx, h, s, lit, locale, isNum, fmtNum, fmtBytes, fmtPct, fmtRate, fmtDuration, fmtAgo, timeEl, digestEl,
    repoHref, ApiError, api, poll, section, table, badge, arr, renderSafely, setVersion, errorBox,
  } = OM;
  const codes = () => OM.codes;

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
      const r = await api('/api/v1/events?limit=20&group=pull', { signal: ctx.ac.signal });
      return renderEvents(arr(r.events));
    }));
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
          h('a', { href: repoHref(d.repository || ''), translate: 'no' }, d.repository || '—'), ' ', digestEl(d.digest)),
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
        h('div', { translate: 'no' }, h('strong', null, u.name || '—'), h('div', { class: 'muted small break' }, u.url || '')),
        u.healthy === false ? badge(t('up.down'), 'bad') : u.healthy === true ? badge(t('up.ok'), 'ok') : badge(t('up.unknown')),
        isNum(u.latency_ms) && u.latency_ms >= 0 ? t('ms', { n: fmtNum(Math.round(u.latency_ms)) }) : '—',
        fmtNum(u.requests), fmtNum(u.errors),
        timeEl(u.last_ok_ms),
        u.last_error_ms ? h('div', null, timeEl(u.last_error_ms), u.last_error ? h('div', { class: 'small break' }, codes().upstreamError(u.last_error)) : null) : t('never'),
        isNum(u.ratelimit_remaining) && u.ratelimit_remaining >= 0 ? fmtNum(u.ratelimit_remaining) : '—',
      ],
    }));
    const errs = list.filter((u) => arr(u.recent_errors).length > 0);
    return h('div', null, table(cols, rows, { id: 'upstreams', caption: t('dash.upstreams') }),
      renderEndpoints(list), renderAccounts(list),
      errs.map((u) => h('details', { class: 'errs' },
        h('summary', null, tx('up.recent_errors', { name: lit(u.name), n: arr(u.recent_errors).length })),
        h('ul', null, arr(u.recent_errors).map((e) => h('li', null, timeEl(e.t_ms), ' ', h('span', { class: 'break' }, codes().upstreamError(e.message))))))));
  }

  /* Each URL of the upstreams that have several (upstreams[].urls): its
   * health, and how long it is still skipped after failing. */
  function renderEndpoints(list) {
    const many = list.filter((u) => arr(u.urls).length > 1);
    if (many.length === 0) return null;
    const cols = [
      { label: t('up.name') }, { label: t('up.url') }, { label: t('up.health') },
      { label: t('up.requests'), cls: 'num' }, { label: t('up.errors'), cls: 'num' },
      { label: t('up.last_error') }, { label: t('up.backoff') },
    ];
    const rows = [];
    for (const u of many) {
      arr(u.urls).forEach((e, i) => rows.push({
        attrs: { 'data-name': u.name || '', 'data-url': e.url || '', 'data-i': String(i) },
        cells: [
          h('span', { translate: 'no' }, u.name || '—'),
          h('code', { class: 'break', translate: 'no' }, e.url || ''),
          e.healthy === false ? badge(t('up.down'), 'bad') : e.healthy === true ? badge(t('up.ok'), 'ok') : badge(t('up.unknown')),
          fmtNum(e.requests), fmtNum(e.errors),
          e.last_error_ms ? h('div', null, timeEl(e.last_error_ms), e.last_error ? h('div', { class: 'small break' }, codes().upstreamError(e.last_error)) : null) : t('never'),
          isNum(e.backoff_until_ms) ? h('span', { 'data-k': 'backoff' }, badge(t('up.skipped'), 'warn'), ' ', tx('up.until', { when: timeEl(e.backoff_until_ms) })) : t('up.in_use'),
        ],
      }));
    }
    return h('div', { class: 'sub' }, h('h3', null, t('up.endpoints')),
      table(cols, rows, { id: 'upstream-urls', caption: t('up.endpoints') }));
  }

  /* Each account of the upstreams' credential pools: never a secret, only
   * the username and what the mirror saw of its limits. */
  function renderAccounts(list) {
    const pools = list.filter((u) => arr(u.accounts).length > 0);
    if (pools.length === 0) return null;
    const cols = [
      { label: t('up.name') }, { label: t('up.account') }, { label: t('col.state') },
      { label: t('up.requests'), cls: 'num' }, { label: t('up.rate_limited'), cls: 'num' },
      { label: t('up.ratelimit'), cls: 'num' }, { label: t('up.last_used') },
    ];
    const rows = [];
    for (const u of pools) {
      for (const a of arr(u.accounts)) rows.push({
        attrs: { 'data-name': u.name || '', 'data-account': a.username || '' },
        cells: [
          h('span', { translate: 'no' }, u.name || '—'),
          h('code', { translate: 'no' }, a.username || ''),
          isNum(a.limited_until_ms) ? h('span', { 'data-k': 'limited' }, badge(t('up.limited'), 'warn'), ' ', tx('up.until', { when: timeEl(a.limited_until_ms) })) : badge(t('up.in_use'), 'ok'),
          fmtNum(a.requests), fmtNum(a.rate_limited),
          isNum(a.ratelimit_remaining) && a.ratelimit_remaining >= 0 ? fmtNum(a.ratelimit_remaining) : '—',
          timeEl(a.last_used_ms),
        ],
      });
    }
    return h('div', { class: 'sub' }, h('h3', null, t('up.accounts')),
      table(cols, rows, { id: 'upstream-accounts', caption: t('up.accounts') }));
  }

  /* Which grouped rows are open survives the 5 s re-render. */
  const openGroups = new Set();
  const groupKey = (e) => [e.code, e.repository, e.first_ms].join(' ');

  /* Recent events, one row per pull of one image (?group=pull): a group's
   * blobs are listed under a disclosure. */
  function renderEvents(list) {
    if (list.length === 0) return h('p', { class: 'muted empty' }, t('events.none'));
    const kinds = { fetch: 'ok', evict: 'warn', error: 'bad', prefetch: 'info', gc: 'warn' };
    const cols = [{ label: t('ev.time') }, { label: t('ev.kind') }, { label: t('ev.repo') }, { label: t('ev.detail') }];
    return table(cols, list.map((e) => {
      const grouped = isNum(e.count) && e.count > 1;
      let detail = h('span', null, codes().eventDetail(e));
      if (grouped) {
        const key = groupKey(e);
        const det = h('details', { class: 'evgroup' },
          h('summary', null, detail, isNum(e.bytes) && e.bytes > 0 ? ' · ' + fmtBytes(e.bytes) : ''),
          h('ul', { class: 'evblobs' }, arr(e.events).map((b) => h('li', null, digestEl(b.digest), ' ', fmtBytes(b.bytes), ' · ', timeEl(b.t_ms)))));
        if (openGroups.has(key)) det.open = true;
        det.addEventListener('toggle', () => { if (det.open) openGroups.add(key); else openGroups.delete(key); });
        detail = det;
      }
      return {
        attrs: { 'data-code': e.code || '', 'data-count': isNum(e.count) ? e.count : 1 },
        cells: [
          timeEl(e.t_ms),
          badge(t('ev.kind.' + e.kind) === 'ev.kind.' + e.kind ? String(e.kind) : t('ev.kind.' + e.kind), kinds[e.kind] || ''),
          e.repository ? h('a', { href: e.kind === 'prefetch' ? '#/route?name=' + encodeURIComponent(e.repository) : repoHref(e.repository), translate: 'no' }, e.repository) : '—',
          h('div', { class: 'break' }, !grouped && e.digest ? digestEl(e.digest) : null, !grouped && e.digest ? ' ' : null,
            detail, !grouped && isNum(e.bytes) && e.bytes > 0 ? ' · ' + fmtBytes(e.bytes) : ''),
        ],
      };
    }), { id: 'events', caption: t('dash.events') });
  }

  const STATE_BADGE = { failed: 'bad', cancelled: 'warn', done: 'ok' };

  function renderPrefetch(jobs) {
    if (jobs === null) return h('p', { class: 'muted' }, t('pf.unavailable'));
    if (jobs.length === 0) return h('p', { class: 'muted empty' }, t('pf.none'));
    const C = codes();
    return table(
      [{ label: t('pf.state') }, { label: t('pf.images') }, { label: t('pf.progress') }, { label: t('pf.started') }],
      jobs.slice(0, 10).map((j) => {
        const n = arr(j.images).length, done = (j.done || 0) + (j.failed || 0);
        const state = String(j.state || '');
        // Failures as codes (this server); the English strings of an older one.
        // (An image is not named twice: a manifest's failure names it.)
        const failures = Array.isArray(j.failures) ? j.failures.map((f) => {
          const named = f.image && !(f.values && f.values.ref === f.image);
          return h('li', null, named ? lit(f.image) : null, named ? ': ' : null, C.pfError(f.code, f.values, f.message));
        })
          : arr(j.errors).map((e) => h('li', null, String(e)));
        const cur = j.current && typeof j.current === 'object' ? j.current : null;
        return {
          attrs: { 'data-id': j.id || '', 'data-state': state, 'data-kind': j.kind || '' },
          cells: [
            h('div', null, badge(t('pf.st.' + state) === 'pf.st.' + state ? state : t('pf.st.' + state), STATE_BADGE[state] || 'info'),
              h('div', { class: 'small muted' }, C.pfKind(j.kind), ' · ', lit(j.id || ''))),
            h('div', { class: 'break' }, lit(arr(j.images).join(', ')),
              failures.length ? h('ul', { class: 'small error-text pferrs' }, failures) : null),
            h('div', null, meter(n > 0 ? (100 * done) / n : null, t('pf.progress')),
              h('span', { class: 'small muted' }, t('pf.count', { done: fmtNum(j.done || 0), failed: fmtNum(j.failed || 0), n: fmtNum(n) }),
                isNum(j.blobs) && j.blobs > 0 ? ' · ' + t('pf.blobs', { blobs: fmtNum(j.blobs), cached: fmtNum(j.blobs_cached || 0) }) : '',
                isNum(j.bytes) && j.bytes > 0 ? ' · ' + t('pf.fetched', { b: fmtBytes(j.bytes) }) : ''),
              cur ? h('div', { class: 'small muted' }, tx('pf.current', {
                image: lit(cur.image || ''), done: fmtNum(cur.blobs_done || 0), total: fmtNum(cur.blobs_total || 0),
              })) : null),
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
      h('label', { for: 'pf-images' }, tx('pf.images.label', { ex: lit('nginx:1.25') })), images,
      h('label', { for: 'pf-platforms' }, tx('pf.platforms.label', { ex: lit('linux/amd64, linux/arm64') })), plats,
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
        say(h('p', { class: 'ok-text', 'data-id': r.id || '' }, tx('pf.queued', { id: lit(r.id || '') })));
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

  OM.views.dashboard = viewDashboard;
})();
