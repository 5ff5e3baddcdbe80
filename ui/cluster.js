/* cluster.js — #/cluster: the replicas of the cluster (from their
 * heartbeats), the downloads in flight and who owns them (the leases),
 * Redis and bucket health and the GC leader, from GET /api/v1/cluster
 * (docs/admin-api.md), polled every 3 s.  Alone (no cluster.redis) it
 * says "single replica" and shows this replica only. */
'use strict';

(() => {
  const OM = window.OM;
  const { t, h, lit, api, poll, section, table, badge, dl, arr, fmtBytes, fmtNum, renderSafely, shortDigest } = OM;

  function health(up, ms) {
    return h('span', { 'data-raw': up ? 'up' : 'down' },
      badge(up ? t('cluster.up') : t('cluster.down'), up ? 'ok' : 'bad'),
      typeof ms === 'number' ? ' ' + t('cluster.latency', { ms: ms.toFixed(1) }) : '');
  }

  function render(r) {
    const box = h('div');
    const alone = r.mode !== 'cluster';
    if (alone) box.append(h('p', { class: 'panel answer', 'data-k': 'alone' }, t('cluster.alone')));
    const gc = r.gc || {};
    box.append(dl([
      [t('cluster.mode'), h('span', { 'data-raw': r.mode || '' }, alone ? t('cluster.mode.alone') : t('cluster.mode.cluster')), 'mode'],
      [t('cluster.self'), lit(r.replica_id || '—'), 'self'],
      [t('cluster.bucket'), h('span', null, lit((r.bucket || {}).backend || ''), ' ', health((r.bucket || {}).up, (r.bucket || {}).latency_ms)), 'bucket'],
      alone ? null : [t('cluster.redis'), health((r.redis || {}).up, (r.redis || {}).latency_ms), 'redis'],
      [t('cluster.gc'), !gc.running ? t('cluster.gc.off') : gc.leader ? t('cluster.gc.here')
        : gc.lease_holder ? lit(gc.lease_holder) : t('cluster.gc.none'), 'gc'],
    ]));
    const reps = arr(r.replicas);
    box.append(h('h2', null, t('cluster.replicas'), ' ', h('span', { class: 'muted', 'data-raw': String(reps.length) }, '(' + fmtNum(reps.length) + ')')));
    if (!reps.length) box.append(h('p', { class: 'muted' }, t('cluster.replicas.none')));
    else box.append(table([{ label: t('cluster.col.id') }, { label: t('cluster.col.peer') }, { label: t('cluster.col.seen') },
      { label: t('cluster.col.inflight'), cls: 'num' }, { label: t('cluster.col.served'), cls: 'num' }, { label: t('cluster.col.version') },
      { label: t('cluster.col.health') }],
    reps.map((p) => ({
      attrs: { 'data-replica': p.id || '' },
      cells: [h('span', null, lit(p.id || '?'), p.self ? [' ', badge(t('cluster.you'), 'ok')] : ''),
        p.peer_url ? h('code', { class: 'break' }, p.peer_url) : '—',
        t('cluster.seen.ago', { s: ((p.last_seen_age_ms || 0) / 1000).toFixed(1) }),
        fmtNum(p.in_flight || 0), fmtBytes(p.bytes_served || 0), lit(p.version || ''),
        h('span', null, badge(p.index_ok ? t('cluster.up') : t('cluster.down'), p.index_ok ? 'ok' : 'bad'), ' / ',
          badge(p.bucket_ok ? t('cluster.up') : t('cluster.down'), p.bucket_ok ? 'ok' : 'bad'))],
    })), { id: 'replicas' }));
    if (!alone) {
      const dls = arr(r.downloads);
      box.append(h('h2', null, t('cluster.downloads')));
      if (!dls.length) box.append(h('p', { class: 'muted' }, t('cluster.downloads.none')));
      else box.append(table([{ label: t('cluster.col.digest') }, { label: t('cluster.col.owner') }, { label: t('cluster.col.ttl'), cls: 'num' }],
        dls.map((f) => ({
          attrs: { 'data-digest': f.digest || '' },
          cells: [h('code', { title: f.digest || '' }, shortDigest ? shortDigest(f.digest || '') : (f.digest || '')),
            lit(f.owner || '?'), f.ttl_ms >= 0 ? (f.ttl_ms / 1000).toFixed(1) + ' s' : '—'],
        })), { id: 'downloads' }));
      if (r.downloads_truncated) box.append(h('p', { class: 'muted small' }, t('cluster.downloads.more')));
    }
    return box;
  }

  function viewCluster(view, ctx) {
    const body = h('div', { 'data-t': 'cluster' });
    view.append(h('h1', { tabindex: '-1' }, t('cluster.title')), section(t('cluster.health'), body));
    poll(ctx, 3000, async () => renderSafely(body, async () => render(await api('/api/v1/cluster', { signal: ctx.ac.signal }))));
  }

  OM.views.cluster = viewCluster;
})();
