/* tools.js — the operator's tools: the route explainer (#/route: which
 * upstream serves a name, and why, in the reader's language from the
 * server's codes) and client setup (#/setup: files and commands for each
 * client, with the server's notes translated), and the not-found page. */
'use strict';

(() => {
  const OM = window.OM;
  const { CLIENTS, t, tx, h, lit, ApiError, api, errorBox, codeBlock, table, badge, dl, arr } = OM;

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
        for (const n of [u.name].concat(arr(u.aliases))) if (n) ns.append(h('option', { value: n, translate: 'no' }, n));
      }
      ns.value = wantNs;
    }).catch(() => {});
    if (wantNs) { ns.append(h('option', { value: wantNs, translate: 'no' }, wantNs)); ns.value = wantNs; }

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
        if (my === seq) result.replaceChildren(renderRoute(r, ref, name));
      } catch (e) {
        if (e.name !== 'AbortError' && my === seq) result.replaceChildren(errorBox(e));
      } finally {
        if (my === seq) result.removeAttribute('aria-busy');
      }
    }
    form.addEventListener('submit', (e) => { e.preventDefault(); explain(); });
    if (input.value) explain();
  }

  /* The pull command for a route: the name the mirror will store it as
   * (or, before the search has decided, the name as typed), and always a
   * tag or digest: the one typed, else :latest, which is what a client
   * pulls without one. */
  function pullCommand(name, ref) {
    return `docker pull ${location.host}/${name}${ref || ':latest'}`;
  }

  /* policy.allow / policy.deny: the verdict, and the rule that decided. */
  function policyLine(p) {
    const key = p.verdict === 'denied' ? 'route.policy.denied' : p.verdict === 'not_allowed' ? 'route.policy.notallowed' : 'route.policy.allowed';
    return h('span', { 'data-verdict': p.verdict || '' }, badge(t(key), p.allowed ? 'ok' : 'bad'),
      p.rule ? [' ', h('code', { class: 'break' }, p.rule)] : '');
  }

  function renderRoute(r, ref, typed) {
    const cands = arr(r.candidates);
    const decided = r.decided && typeof r.decided === 'object' ? r.decided : null;
    const fixed = r.kind === 'fixed';
    const target = decided || (fixed && cands[0] ? { upstream: cands[0].upstream, canonical: cands[0].canonical } : null);
    const box = h('div', { class: 'panel answer', 'data-kind': r.kind || '' });
    const why = h('span', { 'data-raw': r.why_code || '', 'data-reason': (r.why_values && r.why_values.reason) || '' },
      OM.codes.routeWhy(r));
    if (r.kind === 'none') {
      box.append(h('p', { class: 'big' }, t('route.none')), h('p', { class: 'muted', 'data-k': 'why' }, why));
      return box;
    }
    if (target) {
      box.append(h('p', { class: 'big' }, t('route.goes'), ' ',
        h('strong', { 'data-k': 'upstream', translate: 'no' }, target.upstream || '?')),
      h('p', null, t('route.as'), ' ', h('code', { 'data-k': 'canonical', class: 'break' }, (target.canonical || '') + ref)));
    } else {
      box.append(h('p', { class: 'big' }, t('route.undecided')));
    }
    box.append(dl([
      [t('route.kind'), fixed ? t('route.kind.fixed') : r.kind === 'search' ? t('route.kind.search') : lit(r.kind || '—'), 'kind'],
      [t('route.why'), why, 'why'],
      decided && decided.source === 'remembered' ? [t('route.decision'), t('route.remembered'), 'source'] : null,
      r.ns ? [t('route.ns'), lit(r.ns), 'ns'] : null,
      r.policy && typeof r.policy === 'object' ? [t('route.policy'), policyLine(r.policy), 'policy'] : null,
    ]));
    if (cands.length) {
      box.append(h('h3', null, fixed ? t('route.cands.fixed') : t('route.cands.search')),
        table([{ label: '#', cls: 'num' }, { label: t('col.upstream') }, { label: t('route.remote') }, { label: t('route.canonical') }, { label: t('col.state') }],
          cands.map((c, i) => ({
            attrs: { 'data-upstream': c.upstream || '' },
            cells: [String(i + 1), lit(c.upstream || '—'), h('code', { class: 'break' }, c.remote || ''), h('code', { class: 'break' }, c.canonical || ''),
              c.negative ? badge(t('route.negative'), 'warn') : decided && decided.upstream === c.upstream ? badge(t('route.chosen'), 'ok') : ''],
          })), { id: 'candidates' }));
    }
    const pullName = target && target.canonical ? target.canonical : typed;
    if (pullName) {
      box.append(h('h3', null, t('image.pull')), h('div', { 'data-k': 'pull' }, codeBlock(pullCommand(pullName, ref))));
      if (!ref) box.append(h('p', { class: 'muted small' }, tx('route.pull.latest', { tag: lit(':latest') })));
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
    // The notes in English, and the same as codes (note_codes) to translate.
    const notes = arr(cfg.notes).map(String), codes = arr(cfg.note_codes);
    return h('div', { 'data-source': generated ? 'browser' : 'server' },
      generated ? h('p', { class: 'note' }, t('setup.generated')) : null,
      files.length ? h('h2', null, t('setup.files')) : null,
      files.map((f) => h('div', { class: 'file', 'data-path': f.path || '' }, codeBlock(String(f.content || ''), { title: f.path || '' }))),
      cmds.length ? h('h2', null, t('setup.commands')) : null,
      cmds.length ? codeBlock(cmds.map(String).join('\n')) : null,
      notes.length ? h('ul', { class: 'muted notes' }, notes.map((n, i) => h('li', { 'data-code': (codes[i] && codes[i].code) || '' },
        OM.codes.noteText(codes[i], n)))) : null);
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

  OM.views.route = viewRoute;
  OM.views.setup = viewSetup;
  OM.views.notFound = viewNotFound;
  OM.splitRef = splitRef;
})();
