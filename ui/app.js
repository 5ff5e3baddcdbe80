/* app.js — the shell of the ocimirror web UI: a single page with hash
 * routing that reads the admin JSON API (/api/v1/..., docs/admin-api.md)
 * and nothing else.  Loaded last: core.js (shared helpers, window.OM),
 * codes.js (the server's codes in words) and the pages have registered
 * themselves in OM.views.
 *
 * Pages (location.hash):
 *   #/                        dashboard.js: figures, traffic chart, in-flight
 *                             downloads, upstream health, prefetch, events
 *   #/repos?q=&upstream=&page= browse.js: repository browser (server-side search/paging)
 *   #/r/<name>                browse.js: one repository's tags
 *   #/i/<name>@<digest>?tag=  browse.js: one image: platforms, layers, config, pull cmds
 *   #/route?name=&ns=         tools.js: "where does this name go?"
 *   #/setup?for=              tools.js: client configuration for this mirror
 *   #/clients                 clients.js: top clients, who is limited now
 *   #/cluster                 cluster.js: replicas, downloads in flight, Redis/bucket health
 *
 * The rules every page keeps are at the top of core.js.
 */
'use strict';

(() => {
  const OM = window.OM;
  const { DICT, LANGS, t, h, decName, api, newContext, setSaved, pickLang, setVersion, fmtBytes, fmtPct, fmtNum } = OM;
  const V = OM.views;

  // ----------------------------------------------------------------- shell
  function parseHash() {
    let raw = location.hash.replace(/^#/, '');
    if (!raw.startsWith('/')) raw = '/' + raw;
    const qi = raw.indexOf('?');
    return { path: qi < 0 ? raw : raw.slice(0, qi), query: new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1)) };
  }

  const TITLES = { dashboard: 'nav.dashboard', repos: 'nav.repos', route: 'nav.route', setup: 'nav.setup', clients: 'nav.clients', cluster: 'nav.cluster' };
  let firstRoute = true;
  function route() {
    const { path, query } = parseHash();
    const ctx = newContext();
    const view = document.getElementById('view');
    view.replaceChildren();
    let page = null, title = null, m;
    try {
      if (path === '/' || path === '') { page = 'dashboard'; V.dashboard(view, ctx); }
      else if (path === '/repos') { page = 'repos'; V.repos(view, ctx, query); }
      else if ((m = path.match(/^\/r\/(.+)$/))) { page = 'repos'; title = decName(m[1]); V.repo(view, ctx, title, query); }
      else if ((m = path.match(/^\/i\/(.+)@([A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$/))) {
        page = 'repos'; title = decName(m[1]); V.image(view, ctx, title, m[2], query);
      } else if (path === '/route') { page = 'route'; V.route(view, ctx, query); }
      else if (path === '/setup') { page = 'setup'; V.setup(view, ctx, query); }
      else if (path === '/clients') { page = 'clients'; V.clients(view, ctx); }
      else if (path === '/cluster') { page = 'cluster'; V.cluster(view, ctx); }
      else V.notFound(view);
    } catch (e) {
      // A malformed %-escape in a hand-typed URL.
      view.replaceChildren();
      V.notFound(view);
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

  /* Static text in index.html carries data-i18n="key". */
  function applyStatic() {
    const lang = OM.lang;
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    const sel = document.getElementById('lang');
    if (sel) sel.value = lang;
  }

  function setLang(l, save) {
    if (!DICT[l]) return;
    OM.lang = l;
    if (save) setSaved('local', 'om.lang', l);
    applyStatic();
    route();
  }

  function initShell() {
    const sel = document.getElementById('lang');
    // Each language's name in itself: a name, not text to translate.
    sel.replaceChildren(...LANGS.map((l) => h('option', { value: l, translate: 'no', lang: l === 'zh' ? 'zh-CN' : 'en' }, DICT[l]['lang.name'])));
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

  OM.lang = pickLang();
  initShell();
  applyStatic();
  route();
  api('/api/v1/stats').then((st) => setVersion(st.version)).catch(() => {});
  // Exposed for tests and the curious; not an API.
  window.omUI = { t, get lang() { return OM.lang; }, setLang, fmtBytes, fmtPct, fmtNum };
})();
