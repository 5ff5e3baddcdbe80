/* browse.js — the cache's contents: the repository browser (#/repos,
 * searched and paged by the server), one repository's tags (#/r/<name>),
 * one image (#/i/<name>@<digest>: platforms, layers, config, pull
 * commands). */
'use strict';

(() => {
  const OM = window.OM;
  const {
    PER_PAGE, t, tx, h, lit, isNum, fmtNum, fmtBytes, timeEl, isoEl, shortDigest, digestEl,
    repoHref, imageHref, apiName, ApiError, api, errorBox, debounce, codeBlock, section, table, badge, dl,
    arr, plural, crumbs,
  } = OM;

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
      for (const u of arr(r.upstreams)) if (u.name) sel.append(h('option', { value: u.name, translate: 'no' }, u.name));
      if (up && ![...sel.options].some((o) => o.value === up)) sel.append(h('option', { value: up, translate: 'no' }, up));
      sel.value = up;
    }).catch(() => {
      if (up) { sel.append(h('option', { value: up, translate: 'no' }, up)); sel.value = up; }
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
      status.replaceChildren(...(q ? tx('repos.count.q', { n: fmtNum(total), q: lit(q) }) : [plural(total, 'repos.count.1', 'repos.count')]));
      status.dataset.raw = String(total);
      if (list.length === 0) {
        results.replaceChildren(h('p', { class: 'empty' }, q ? tx('repos.nomatch', { q: lit(q) }) : t('repos.empty')));
      } else {
        const cols = [{ label: t('col.name') }, { label: t('col.upstream') }, { label: t('col.tags'), cls: 'num' },
          { label: t('col.size'), cls: 'num' }, { label: t('col.last_pulled') }, { label: t('col.pulls'), cls: 'num' }];
        results.replaceChildren(table(cols, list.map((x) => ({
          attrs: { 'data-name': x.name || '' },
          cells: [h('a', { href: repoHref(x.name || ''), translate: 'no' }, highlight(x.name || '', q)), lit(x.upstream || '—'),
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
  /* One repository's tags, a page of TAGS_PER_PAGE at a time (a
   * repository can hold thousands of tags). */
  const TAGS_PER_PAGE = 100;
  function viewRepo(view, ctx, name, query) {
    let page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
    view.append(crumbs([t('nav.repos'), '#/repos'], [name]),
      h('h1', { tabindex: '-1', class: 'break', translate: 'no' }, name));
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
            r.upstream ? ' · ' : '', r.upstream ? tx('repo.from', { up: lit(r.upstream) }) : ''),
          tags.length === 0 ? h('p', { class: 'empty' }, t('tags.none')) :
            table(cols, tags.map((x) => ({
              attrs: { 'data-tag': x.tag || '' },
              cells: [
                x.digest ? h('a', { href: imageHref(name, x.digest, x.tag), translate: 'no' }, h('strong', null, x.tag || '—')) : lit(x.tag || '—'),
                x.digest ? h('a', { href: imageHref(name, x.digest, x.tag) }, digestEl(x.digest)) : '—',
                fmtBytes(x.size),
                arr(x.platforms).length ? h('span', { class: 'chips', translate: 'no' }, arr(x.platforms).map((pl) => h('span', { class: 'chip' }, pl))) : h('span', { class: 'muted' }, t('single')),
                timeEl(x.fetched_ms), timeEl(x.checked_ms), timeEl(x.last_pulled_ms), fmtNum(x.pull_count),
                x.stale ? badge(t('tags.stale'), 'warn') : badge(t('tags.fresh'), 'ok'),
              ],
            })), { id: 'tags', caption: tx('tags.caption', { name: lit(name) }) }));
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
          ? h('div', { class: 'empty' }, h('p', null, tx('repo.notcached', { name: lit(name) })),
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
      h('h1', { tabindex: '-1', class: 'break', translate: 'no' }, name + (tag ? ':' + tag : '')),
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
      arr(im.tags).length ? [t('image.tags'), h('span', { class: 'chips', translate: 'no' }, arr(im.tags).map((x) => h('span', { class: 'chip' }, String(x)))), 'tags'] : null,
      [t('image.media_type'), h('code', { class: 'break' }, im.media_type || '—'), 'media_type'],
      [t('image.manifest_size'), fmtBytes(im.size), 'size'],
      im.kind === 'index' ? [t('image.platforms'), fmtNum(arr(im.platforms).length), 'n_platforms'] : null,
      layers.length ? [t('image.layers_total'), h('span', { 'data-raw': layerTotal }, fmtBytes(layerTotal) + ' · ' + plural(layers.length, 'layers.count.1', 'layers.count')), 'layers_total'] : null,
      cfg && (cfg.os || cfg.architecture) ? [t('image.osarch'), lit([cfg.os, cfg.architecture, cfg.variant].filter(Boolean).join('/')), 'osarch'] : null,
      cfg && cfg.created ? [t('image.created'), isoEl(cfg.created), 'created'] : null,
    ])));
    out.push(pullSection(im, name, digest, tag));
    if (im.kind === 'index' || arr(im.platforms).length) {
      const cols = [{ label: t('col.platform') }, { label: t('col.digest') }, { label: t('col.size'), cls: 'num' },
        { label: t('col.media_type') }, { label: t('col.cached') }];
      out.push(section(t('image.platforms'), table(cols, arr(im.platforms).map((p) => ({
        attrs: { 'data-platform': p.platform || '' },
        cells: [
          p.digest ? h('a', { href: imageHref(name, p.digest, tag), translate: 'no' }, p.platform || '?') : lit(p.platform || '?'),
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
        h('div', { class: 'pull-label', translate: 'no' }, k), codeBlock(cmds[k], { label: t('copy.what', { what: k }) }))));
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
        [t('cfg.osarch'), lit([cfg.os, cfg.architecture, cfg.variant].filter(Boolean).join('/') || '—'), 'config.osarch'],
        [t('cfg.entrypoint'), list(cfg.entrypoint), 'config.entrypoint'],
        [t('cfg.cmd'), list(cfg.cmd), 'config.cmd'],
        cfg.working_dir ? [t('cfg.workdir'), h('code', { class: 'break' }, String(cfg.working_dir)), 'config.working_dir'] : null,
        cfg.user ? [t('cfg.user'), h('code', null, String(cfg.user)), 'config.user'] : null,
        cfg.exposed_ports && typeof cfg.exposed_ports === 'object' && Object.keys(cfg.exposed_ports).length
          ? [t('cfg.ports'), lit(Object.keys(cfg.exposed_ports).join(', ')), 'config.exposed_ports'] : null,
      ]),
      h('h3', null, t('cfg.env')),
      env.length ? h('ul', { class: 'env', 'data-t': 'env' }, env.map((e) => h('li', null, h('code', { class: 'break' }, String(e))))) : h('p', { class: 'muted' }, '—'),
      h('h3', null, t('cfg.labels')),
      labels.length ? table([{ label: t('cfg.key') }, { label: t('cfg.value') }],
        labels.map(([k, v]) => [h('code', { class: 'break' }, k), h('span', { class: 'break', translate: 'no' }, String(v))]), { id: 'labels' }) : h('p', { class: 'muted' }, '—'),
      h('h3', null, t('cfg.history')),
      hist.length ? table([{ label: '#', cls: 'num' }, { label: t('cfg.created') }, { label: t('cfg.created_by') }, { label: '' }],
        hist.map((x, i) => [String(i + 1), isoEl(x.created), h('code', { class: 'break small' }, x.created_by || ''),
          x.empty_layer ? badge(t('cfg.empty_layer')) : '']), { id: 'history' }) : h('p', { class: 'muted' }, '—'));
  }

  OM.views.repos = viewRepos;
  OM.views.repo = viewRepo;
  OM.views.image = viewImage;
})();
