/* codes.js — what the server says as codes and values, said in the
 * reader's language: events (docs/admin-api.md lists their codes), the
 * route explainer's reasons, prefetch failures (docs/prefetch.md),
 * upstream errors, client-setup notes.
 *
 * The server keeps an English sentence beside every code (for API users
 * and logs); this page never shows it in Chinese, except as a fallback for
 * a code it does not know yet (then the browser test that walks every page
 * in Chinese fails, which is the point: a new code needs its translation
 * here and in i18n.js).  Values that are data (names, digests, job ids)
 * go in as lit() nodes.
 */
'use strict';

(() => {
  const OM = window.OM;
  const { DICT, t, tx, h, lit, isNum, fmtNum, fmtBytes, fmtDuration } = OM;

  const has = (key) => DICT.en[key] !== undefined;
  const vals = (o) => (o && typeof o === 'object' && !Array.isArray(o) ? o : {});
  const num = (v) => (isNum(v) ? fmtNum(v) : '?');
  const code = (x) => h('code', { translate: 'no' }, String(x));

  /* An om_err name ("upstream", "nospace"...) as words. */
  function errName(e) {
    return has('oerr.' + e) ? t('oerr.' + e) : t('oerr.unknown');
  }

  /* libcurl's CURLcode, for the few a prefetch meets in practice. */
  function curlText(n) {
    return has('curl.' + n) ? t('curl.' + n) : t('curl.other', { n });
  }

  /* A prefetch failure: {code, values} (a job's failure, an image_end
   * record's error, or an event's values with the code in "error"). */
  function pfError(c, v0, message) {
    const v = vals(v0);
    const ref = v.ref !== undefined ? lit(v.ref) : lit('?');
    switch (c) {
      case 'http_status':
        return v.oci_code ? tx('pfe.http_status.oci', { ref, status: v.status, oci: code(v.oci_code) })
          : tx('pfe.http_status', { ref, status: v.status });
      case 'network':
        return tx('pfe.network', { ref, what: curlText(v.curl) });
      case 'manifest_too_big':
        return tx('pfe.manifest_too_big', { ref, limit: fmtBytes(v.limit) });
      case 'too_many_blobs':
        return tx('pfe.too_many_blobs', { limit: num(v.limit) });
      case 'no_platform':
        return tx('pfe.no_platform', { platforms: lit(v.platforms || '') });
      case 'blob_short':
        return tx('pfe.blob_short', { ref, got: num(v.got), want: num(v.want) });
      case 'lost':
        return tx('pfe.lost', { job: lit(v.job || '?') });
      case 'digest_mismatch': case 'nested_index': case 'manifest_unreadable':
        return tx('pfe.' + c, { ref });
      case 'cancelled': case 'stale': case 'invalid_reference': case 'internal': case 'refused':
        return [t('pfe.' + c)];
      default:
        // Unknown here: the server's English, as plain text (see the top).
        return [message || t('pfe.other', { code: c || '?' })];
    }
  }

  /* One event's detail (e from /api/v1/events?group=pull: count > 1 is a
   * group of blob events). */
  function eventDetail(e) {
    const v = vals(e.values);
    const n = isNum(e.count) && e.count > 1 ? e.count : 1;
    const group = (key) => (n > 1 ? key + '.n' : key);
    switch (e.code) {
      case 'blob_fetched':
        return tx(group('ev.blob_fetched'), { n: fmtNum(n) });
      case 'blob_failed':
        return tx(group('ev.blob_failed'), { n: fmtNum(n), error: errName(v.error) });
      case 'blob_digest_mismatch':
        return tx(group('ev.blob_digest_mismatch'), { n: fmtNum(n) });
      case 'image_evicted':
        return tx('ev.image_evicted', {
          image: lit((e.repository || '') + (v.tag ? ':' + v.tag : '')),
          why: has('ev.why.' + v.why) ? t('ev.why.' + v.why) : lit(v.why || '?'),
          idle: fmtDuration(v.idle_s), objects: num(v.objects),
        });
      case 'gc_finished': case 'gc_failed':
        return tx('ev.' + e.code, {
          images: num(v.images), objects: num(v.objects), ingest: num(v.ingest),
          before: fmtBytes(v.used_before), after: fmtBytes(v.used_after),
          max: isNum(v.max_size) && v.max_size > 0 ? fmtBytes(v.max_size) : t('ev.nolimit'),
          error: errName(v.error),
        });
      case 'prefetch_image_done':
        return tx('ev.prefetch_image_done', { job: lit(v.job || '?'), blobs: num(v.blobs), cached: num(v.cached) });
      case 'prefetch_image_failed':
        return tx('ev.prefetch_image_failed', { job: lit(v.job || '?'), error: h('span', null, pfError(v.error, v, e.message)) });
      case 'prefetch_job_finished': case 'prefetch_job_cancelled':
        return tx('ev.' + e.code, {
          job: lit(v.job || '?'), kind: pfKind(v.kind), done: num(v.done), failed: num(v.failed),
        });
      default:
        // A code this page does not know (or an event without one): the
        // server's English, as plain text (see the top).
        return [e.message || t('ev.unknown', { code: e.code || '—' })];
    }
  }

  function pfKind(k) { return has('pf.kind.' + k) ? t('pf.kind.' + k) : String(k || '?'); }

  /* Why the route explainer decided as it did: {why_code, why_values,
   * kind}. */
  function routeWhy(r) {
    const v = vals(r.why_values);
    if (r.kind === 'none') {
      const key = 'why.none.' + (v.reason || '');
      if (!has(key)) return [String(r.why || '?')];
      return tx(key, { ns: lit(v.ns || ''), registry: lit(v.registry || '') });
    }
    switch (r.why_code) {
      case 'ns': return tx('why.ns.v', { ns: lit(v.ns || r.ns || ''), upstream: lit(v.upstream || '?') });
      case 'prefix': return tx('why.prefix.v', { upstream: lit(v.upstream || '?') });
      case 'rewrite': return tx('why.rewrite.v', { match: code(v.match || '?'), target: code(v.target || '?') });
      case 'search': return [t('why.search')];
      default: return [String(r.why || r.why_code || '?')];
    }
  }

  /* An upstream's last error: "HTTP 503" (what upstream.c records for a
   * status) is translated; anything else is libcurl's or the upstream's own
   * diagnostic, shown verbatim as such. */
  function upstreamError(msg) {
    const m = /^HTTP (\d{3})$/.exec(String(msg || ''));
    if (m) return tx('up.err.http', { status: m[1] });
    return tx('up.err.other', { detail: code(msg || '') });
  }

  /* A client-setup note {code, values}; text is the English one (the
   * fallback for a code unknown here). */
  const NOTE_LITS = {
    containerd_config_path: { key: 'config_path', file: '/etc/containerd/config.toml',
      section: '[plugins."io.containerd.grpc.v1.cri".registry]', setting: 'config_path = "/etc/containerd/certs.d"' },
    containerd_private_ca: { ca: 'ca = "/path/to/ca.crt"', table: '[host."..."]' },
    crio_dropin: { dir: '/etc/containers/registries.conf.d/*.conf', file: 'registries.conf', registry: '[[registry]]' },
    podman_rootless: { dir: '~/.config/containers/registries.conf.d/' },
    podman_qualified: { example: 'docker.io/library/alpine' },
    docker_merge: { file: '/etc/docker/daemon.json' },
    docker_hub_only: { key: 'registry-mirrors', cmd: (v) => `docker pull ${v.host || 'MIRROR'}/quay.io/coreos/etcd:v3.5.0` },
    k3s_every_node: {},
    kubeadm_plain_http: { file: 'hosts.toml', kubelet: 'kubelet', key: 'config_path', dir: '/etc/containerd/certs.d' },
    kubeadm_sandbox: { pause: 'pause', setting: (v) => `sandbox_image = "${v.host || 'MIRROR'}/pause:3.9"`, registry: 'registry.k8s.io' },
  };
  function noteText(note, text) {
    const c = note && note.code;
    if (!c || !NOTE_LITS[c] || !has('note.' + c)) return [String(text || '')];
    const v = vals(note.values), params = {};
    for (const [k, x] of Object.entries(NOTE_LITS[c])) params[k] = code(typeof x === 'function' ? x(v) : x);
    return tx('note.' + c, params);
  }

  OM.codes = { errName, curlText, pfError, pfKind, eventDetail, routeWhy, upstreamError, noteText };
})();
