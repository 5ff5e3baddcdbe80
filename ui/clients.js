/* clients.js — the clients page (#/clients): who uses the mirror and who a
 * per-client limit refuses now (GET /api/v1/clients, docs/admin-api.md):
 * the limits in force, refusals by limit, the clients limited now, and the
 * top clients by bytes and by requests over the last 24 hours.  Polls every
 * 5 s while shown. */
'use strict';

(() => {
  const OM = window.OM;
  const { t, h, lit, isNum, fmtNum, fmtBytes, timeEl, api, poll, section, table, badge, arr, dl, renderSafely } = OM;

  const LIMITS = ['requests_per_second', 'downloads', 'bytes_per_day', 'upstream_fetches_per_minute'];
  const LABELS = { requests_per_second: 'requests_per_second', downloads: 'downloads',
    bytes_per_day: 'bytes_per_day', upstream_fetches: 'upstream_fetches_per_minute' };

  function limitName(key) { return key ? t('limit.' + key) : '—'; }
  function limitValue(key, v) {
    if (!isNum(v) || v === 0) return t('clients.unlimited');
    return key === 'bytes_per_day' ? fmtBytes(v) : fmtNum(v);
  }

  function who(c) {
    return h('span', { translate: 'no' }, c.is_user ? badge(t('clients.user')) : null, c.is_user ? ' ' : null, lit(c.client));
  }

  function clientTable(list, id, caption) {
    if (list.length === 0) return h('p', { class: 'muted empty' }, t('clients.none'));
    const cols = [
      { label: t('clients.client') }, { label: t('clients.bytes'), cls: 'num' },
      { label: t('clients.requests'), cls: 'num' }, { label: t('clients.rejected'), cls: 'num' },
      { label: t('clients.downloads'), cls: 'num' }, { label: t('clients.last_seen') },
      { label: t('clients.limited_by') },
    ];
    const rows = list.map((c) => ({
      attrs: { 'data-client': c.client || '' },
      cells: [
        who(c),
        h('span', { 'data-raw': String(c.bytes_24h) }, fmtBytes(c.bytes_24h)),
        h('span', { 'data-raw': String(c.requests_24h) }, fmtNum(c.requests_24h)),
        fmtNum(c.rejected_24h), fmtNum(c.downloads), timeEl(c.last_seen_ms),
        c.limited_by ? h('div', null, badge(limitName(c.limited_by), 'bad'), ' ',
          h('span', { class: 'muted small' }, t('up.until', { when: new Date(c.limited_until_ms).toLocaleTimeString(OM.locale()) }))) : '—',
      ],
    }));
    return table(cols, rows, { id, caption });
  }

  function renderClients(r) {
    const pc = r.per_client || {};
    const rej = r.rejections || {};
    const rows = LIMITS.map((k) => [limitName(k), limitValue(k, pc[k]), k]);
    rows.splice(1, 0, [t('limit.burst'), limitValue('burst', pc.burst), 'burst']);
    const limits = dl(rows
      .concat([[t('clients.trusted_proxies'), arr(r.trusted_proxies).length ? lit(arr(r.trusted_proxies).join(', ')) : t('clients.none_short'), 'trusted_proxies'],
        [t('clients.per_user'), fmtNum(r.per_user_count), 'per_user'],
        [t('clients.tracked'), t('clients.tracked_of', { n: fmtNum(r.clients), max: fmtNum(r.max_clients) }), 'tracked']]));
    const refusals = dl(Object.keys(LABELS).map((k) => [limitName(LABELS[k]), fmtNum(rej[k] || 0), 'rej-' + k]));
    return h('div', null,
      section(t('clients.limits'), limits),
      section(t('clients.refusals'), refusals),
      section(t('clients.limited'), clientTable(arr(r.limited), 'clients-limited', t('clients.limited'))),
      section(t('clients.top_bytes'), clientTable(arr(r.top_by_bytes), 'clients-bytes', t('clients.top_bytes'))),
      section(t('clients.top_requests'), clientTable(arr(r.top_by_requests), 'clients-requests', t('clients.top_requests'))));
  }

  function viewClients(view, ctx) {
    view.append(h('h1', { tabindex: '-1' }, t('clients.title')), h('p', { class: 'muted' }, t('clients.intro')));
    const box = h('div', { 'data-t': 'clients' });
    view.append(box);
    poll(ctx, 5000, async () => renderSafely(box, async () => {
      const r = await api('/api/v1/clients?n=50', { signal: ctx.ac.signal });
      return renderClients(r);
    }));
  }

  OM.views.clients = viewClients;
})();
