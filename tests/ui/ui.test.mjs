// ui.test.mjs — the web UI in a real headless Chromium against a real
// mirror with real registries (world_launcher.py: three docker-registry
// upstreams, images pulled through the mirror first).  Every figure the
// page shows is compared with what the admin API answers at the same time,
// and the images' platforms and layers also with the fixtures themselves.
//
//   cd tests/ui && OCIMIRROR_BIN=../../build/ocimirror ../../scripts/netns-run node --test ui.test.mjs
//
// Screenshots land in tests/ui/artifacts/ (git-ignored).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { launch } from './browser.mjs';
import { HERE, eventually, getJSON, newPage, requireNetns, shot, startReady, stopProcess } from './helpers.mjs';

let world = null;   // what world_launcher.py printed
let launcher = null;
let browser = null;
let base = '';
const api = (p) => getJSON(base, p);
const pick = (obj, dotted) => dotted.split('.').reduce((o, k) => (o == null ? o : o[k]), obj);

before(async () => {
  requireNetns();
  const bin = process.env.OCIMIRROR_BIN || path.resolve(HERE, '../../build/ocimirror');
  const r = await startReady(['python3', '-u', path.join(HERE, 'world_launcher.py')], 'OM_WORLD ', 300000,
    { OCIMIRROR_BIN: bin });
  launcher = r.proc;
  world = JSON.parse(r.value);
  base = world.url;
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (launcher) {
    const code = await stopProcess(launcher, 60000);
    // The launcher exits 1 when the mirror died or logged a sanitizer report.
    assert.equal(code, 0, `world_launcher.py exited ${code}: see its messages above and ${world && world.log}`);
  }
});

async function cardRaw(page, key) {
  const v = await page.getAttribute(`.card[data-k="${key}"] .value`, 'data-raw');
  return v === null || v === '' || v === 'undefined' ? null : Number(v);
}
async function cardText(page, key) {
  return (await page.textContent(`.card[data-k="${key}"] .value`)).trim();
}
async function noErrors(page) {
  assert.deepEqual(page.omErrors, [], 'the page logged errors');
}
async function rowsAttr(page, sel, attr) {
  return page.$$eval(sel, (els, a) => els.map((e) => e.getAttribute(a)), attr);
}

describe('the web UI against a real mirror', () => {
  test('the page and its assets are served with types, validators and cache rules', async () => {
    const r = await fetch(base + '/');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.match(r.headers.get('etag'), /^"[0-9a-f]{16}"$/);
    assert.match(r.headers.get('content-security-policy'), /script-src 'self'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const html = await r.text();
    assert.ok(!html.includes('{{v:'), 'a {{v:...}} placeholder was left in index.html');
    const m = html.match(/\/ui\/app\.js\?v=([0-9a-f]{16})/);
    assert.ok(m, 'index.html loads /ui/app.js?v=<hash>');

    const js = await fetch(base + '/ui/app.js?v=' + m[1]);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(js.headers.get('etag'), `"${m[1]}"`, 'the ?v= hash is the asset\'s ETag');
    await js.arrayBuffer();
    const unversioned = await fetch(base + '/ui/app.js');
    assert.equal(unversioned.headers.get('cache-control'), 'no-cache');
    await unversioned.arrayBuffer();
    const again = await fetch(base + '/ui/app.js', { headers: { 'If-None-Match': `"x", W/"${m[1]}"` } });
    assert.equal(again.status, 304);
    const css = await fetch(base + '/ui/app.css');
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    await css.arrayBuffer();
    const svg = await fetch(base + '/ui/icon.svg');
    assert.equal(svg.headers.get('content-type'), 'image/svg+xml');
    await svg.arrayBuffer();

    for (const p of ['/ui/nope.js', '/ui/', '/index.html', '/favicon.ico', '/ui/app.js/', '/ui/%2e%2e/app.js']) {
      const x = await fetch(base + p);
      await x.arrayBuffer();
      assert.equal(x.status, p === '/ui/' ? 200 : 404, p);
    }
    const head = await fetch(base + '/', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(html)));
  });

  test('the dashboard shows the figures the API reports', async () => {
    const { ctx, page } = await newPage(browser);
    const before0 = await api('/api/v1/stats');
    await page.goto(base + '/#/');
    await page.waitForSelector('.card[data-k="storage.repositories"] .value');
    // Figures that only /v2/ traffic changes: equal to the API's now.  (A
    // poll of the page may straddle a change; eventually() waits for the
    // next one.)
    const stable = ['storage.repositories', 'storage.tags', 'storage.manifests', 'storage.blobs',
      'storage.used_bytes', 'bytes_served.cache', 'bytes_served.upstream',
      'hit_ratio.since_start', 'hit_ratio.last_hour'];
    let st = null;
    await eventually(async () => {
      st = await api('/api/v1/stats');
      for (const k of stable) assert.equal(await cardRaw(page, k), pick(st, k), k);
    }, 15000, 500);
    assert.equal(st.storage.repositories, world.repositories, 'the pulled repositories are all cached');
    // The text is the API figure, formatted by the page's own formatter.
    const fmt = (fn, v) => page.evaluate(([f, x]) => window.omUI[f](x), [fn, v]);
    assert.equal(await cardText(page, 'storage.repositories'), await fmt('fmtNum', st.storage.repositories));
    assert.equal(await cardText(page, 'storage.used_bytes'), await fmt('fmtBytes', st.storage.used_bytes));
    assert.equal(await cardText(page, 'bytes_served.upstream'), await fmt('fmtBytes', st.bytes_served.upstream));
    assert.equal(await cardText(page, 'hit_ratio.since_start'), await fmt('fmtPct', st.hit_ratio.since_start));
    // The quota (1 GiB in the launcher's config) is shown with a bar.
    assert.match(await page.textContent('.card[data-k="storage.used_bytes"] .sub'), /1\.00 GiB/);
    assert.equal(await page.getAttribute('.card[data-k="storage.used_bytes"] [role=progressbar]', 'aria-valuenow'),
      (100 * st.storage.used_bytes / st.storage.quota_bytes).toFixed(0));
    // Requests grow with every request, the page's own included.
    const shown = await cardRaw(page, 'requests');
    const after1 = await api('/api/v1/stats');
    assert.ok(shown >= before0.requests && shown <= after1.requests, `requests ${shown} not in [${before0.requests}, ${after1.requests}]`);

    // The chart: one cache bar per minute with bytes from cache, per the history.
    const hist = st.history.slice(-60);
    const n = await page.$$eval('svg.chartsvg rect.b-up', (e) => e.length);
    assert.equal(n, hist.filter((p) => p.bytes_upstream > 0).length, 'upstream bars');
    assert.ok(n >= 1, 'the pulls of the launcher show in the chart');
    assert.equal(await page.getAttribute('svg.chartsvg', 'role'), 'img');

    // Upstream health: one row per upstream, in the API's order.
    const ups = (await api('/api/v1/upstreams')).upstreams;
    await page.waitForSelector('table[data-t="upstreams"] tbody tr');
    assert.deepEqual(await rowsAttr(page, 'table[data-t="upstreams"] tbody tr', 'data-name'), ups.map((u) => u.name));
    for (const u of ups) {
      const badge = (await page.textContent(`table[data-t="upstreams"] tr[data-name="${u.name}"] .badge`)).trim();
      assert.equal(badge, u.healthy ? 'healthy' : 'failing', u.name);
    }
    // Recent events: the newest 20 rows, a pull of an image being one row.
    await page.waitForSelector('table[data-t="events"] tbody tr');
    const evRows = await page.$$eval('table[data-t="events"] tbody tr', (e) => e.length);
    assert.equal(evRows, Math.min(20, (await api('/api/v1/events?limit=20&group=pull')).events.length));
    await page.waitForSelector('[data-t="inflight"] .empty');
    await shot(page, 'desktop-en-dashboard');
    await noErrors(page);
    await ctx.close();
  });

  test('searching the repository browser finds a repository and opens its tags', async () => {
    const { ctx, page } = await newPage(browser);
    const repoCalls = [];
    page.on('request', (r) => { if (r.url().includes('/api/v1/repositories?')) repoCalls.push(new URL(r.url())); });
    await page.goto(base + '/#/repos');
    await page.waitForSelector('table[data-t="repos"] tbody tr');
    const p1 = await api('/api/v1/repositories?page=1&per_page=50');
    assert.ok(p1.total > 50, 'the launcher made more than one page of repositories');
    assert.equal(Number(await page.getAttribute('#repo-status', 'data-raw')), p1.total);
    assert.deepEqual(await rowsAttr(page, 'table[data-t="repos"] tbody tr', 'data-name'), p1.repositories.map((r) => r.name));
    assert.equal((await page.textContent('nav.pager span')).trim(), `Page 1 of ${Math.ceil(p1.total / 50)}`);

    await page.click('nav.pager button:last-child');
    const p2 = await api('/api/v1/repositories?page=2&per_page=50');
    await eventually(async () => assert.deepEqual(
      await rowsAttr(page, 'table[data-t="repos"] tbody tr', 'data-name'), p2.repositories.map((r) => r.name)));
    assert.match(page.url(), /#\/repos\?page=2$/);

    await page.fill('#repo-q', 'coreos');
    const q = await api('/api/v1/repositories?q=coreos&page=1&per_page=50');
    assert.ok(q.total >= 1);
    await eventually(async () => {
      assert.equal(Number(await page.getAttribute('#repo-status', 'data-raw')), q.total);
      assert.deepEqual(await rowsAttr(page, 'table[data-t="repos"] tbody tr', 'data-name'), q.repositories.map((r) => r.name));
    });
    assert.match(page.url(), /#\/repos\?q=coreos$/, 'a new search starts at page 1');
    assert.equal((await page.textContent('table[data-t="repos"] mark')).toLowerCase(), 'coreos');
    // Never the whole list: every query was one page of at most 100.
    assert.ok(repoCalls.length >= 3);
    for (const u of repoCalls) assert.ok(Number(u.searchParams.get('per_page')) <= 100, u.href);

    await page.click('table[data-t="repos"] a[href="#/r/quay.io/coreos/etcd"]');
    await page.waitForURL(/#\/r\/quay\.io\/coreos\/etcd$/);
    await page.waitForSelector('table[data-t="tags"] tbody tr');
    const tags = (await api('/api/v1/repositories/quay.io/coreos/etcd/tags')).tags;
    assert.deepEqual(await rowsAttr(page, 'table[data-t="tags"] tbody tr', 'data-tag'), tags.map((x) => x.tag));
    assert.deepEqual(await rowsAttr(page, 'table[data-t="tags"] tbody tr code.digest', 'title'), tags.map((x) => x.digest));
    assert.equal(tags[0].digest, world.images.etcd.digest);
    await shot(page, 'desktop-en-repository');
    await noErrors(page);
    await ctx.close();
  });

  test('an image page shows the platforms and layers of the API and of the pushed image', async () => {
    const { ctx, page } = await newPage(browser, { clipboard: base });
    const multi = world.images.multi;
    await page.goto(base + '/#/r/' + multi.name);
    await page.click(`table[data-t="tags"] tr[data-tag="${multi.tag}"] a >> nth=0`);
    await page.waitForSelector('table[data-t="platforms"] tbody tr');
    const im = await api(`/api/v1/images/${multi.name}@${multi.digest}`);
    assert.equal(im.kind, 'index');
    assert.deepEqual(await rowsAttr(page, 'table[data-t="platforms"] tbody tr', 'data-platform'), im.platforms.map((p) => p.platform));
    assert.deepEqual(await rowsAttr(page, 'table[data-t="platforms"] tbody tr code.digest', 'title'), im.platforms.map((p) => p.digest));
    assert.deepEqual(Object.fromEntries(im.platforms.map((p) => [p.platform, p.digest])), multi.platforms, 'API = fixture');

    // Pull commands: by tag first (the page was opened from the tag), by
    // digest exactly the API's; the copy button copies the shown text.
    const docker = () => page.textContent('.pull[data-client="docker"] pre');
    assert.equal(await docker(), im.pull.docker.replace('@' + multi.digest, ':' + multi.tag));
    await page.click('.seg button:text-is("digest")');
    assert.equal(await docker(), im.pull.docker);
    for (const k of ['podman', 'ctr']) assert.equal(await page.textContent(`.pull[data-client="${k}"] pre`), im.pull[k]);
    await page.click('.pull[data-client="docker"] button.copy');
    await eventually(async () => assert.equal(await page.evaluate(() => navigator.clipboard.readText()), im.pull.docker), 5000);
    await shot(page, 'desktop-en-image-index');

    // One platform: its layers, sizes and config.
    const plat = 'linux/arm64/v8';
    const child = multi.children[plat];
    await page.click(`table[data-t="platforms"] tr[data-platform="${plat}"] a`);
    await page.waitForSelector('table[data-t="layers"] tbody tr');
    const ci = await api(`/api/v1/images/${multi.name}@${child.digest}`);
    assert.deepEqual(ci.layers.map((l) => l.digest), child.layers, 'API = fixture');
    assert.deepEqual(await rowsAttr(page, 'table[data-t="layers"] tbody tr', 'data-digest'), child.layers);
    const sizes = await page.$$eval('table[data-t="layers"] tbody tr span[data-raw]', (e) => e.map((x) => Number(x.dataset.raw)));
    assert.deepEqual(sizes, child.layers.map((d) => multi.sizes[d]));
    assert.equal((await page.textContent('[data-k="config.osarch"] dd')).trim(), 'linux/arm64/v8');
    assert.deepEqual(await page.$$eval('ul[data-t="env"] li', (e) => e.map((x) => x.textContent)), ci.config.env);
    assert.equal(await page.$$eval('table[data-t="history"] tbody tr', (e) => e.length), ci.config.history.length);
    assert.equal((await page.textContent('[data-k="config.cmd"] dd')).trim(), JSON.stringify(ci.config.cmd));
    await noErrors(page);
    await ctx.close();
  });

  test('text from the API is never run as markup', async () => {
    const { ctx, page } = await newPage(browser);
    const evil = world.images.evil;
    await page.goto(`${base}/#/i/${evil.name}@${evil.digest}`);
    await page.waitForSelector('table[data-t="labels"] tbody tr');
    const cells = await page.$$eval('table[data-t="labels"] tbody tr td:nth-child(2)', (e) => e.map((x) => x.textContent));
    assert.ok(cells.includes(world.evil), 'the hostile label is shown as text');
    assert.equal(await page.$$eval('img[src="x"], #view script, #view b', (e) => e.length), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await noErrors(page);
    await ctx.close();
  });

  test('the route explainer answers what the API answers', async () => {
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/route?name=' + encodeURIComponent('k8s.gcr.io/pause:3.9'));
    await page.waitForSelector('#route-result [data-k="upstream"]');
    const r = await api('/api/v1/route?name=' + encodeURIComponent('k8s.gcr.io/pause'));
    assert.equal(r.kind, 'fixed');
    assert.equal((await page.textContent('#route-result [data-k="upstream"]')).trim(), r.decided.upstream);
    assert.equal((await page.textContent('#route-result [data-k="canonical"]')).trim(), r.decided.canonical + ':3.9');
    assert.equal(r.decided.canonical, 'registry.k8s.io/pause');

    await page.fill('#route-name', 'alpine');
    await page.click('#view form button[type="submit"]');
    await page.waitForSelector('#route-result .answer[data-kind="search"]');
    const s = await api('/api/v1/route?name=alpine');
    assert.deepEqual(await rowsAttr(page, 'table[data-t="candidates"] tbody tr', 'data-upstream'), s.candidates.map((c) => c.upstream));
    assert.match(page.url(), /#\/route\?name=alpine$/);
    await shot(page, 'desktop-en-route');
    await noErrors(page);
    await ctx.close();
  });

  test('the route page\'s pull command always carries a tag', async () => {
    const { ctx, page } = await newPage(browser);
    const cases = [
      ['alpine', 'alpine:latest'],                                       // undecided: the name as typed
      ['quay.io/coreos/etcd', 'quay.io/coreos/etcd:latest'],              // no tag typed
      ['k8s.gcr.io/pause:3.9', 'registry.k8s.io/pause:3.9'],              // the tag typed
      ['quay.io/coreos/etcd@' + world.images.etcd.digest, 'quay.io/coreos/etcd@' + world.images.etcd.digest],
    ];
    const host = new URL(base).host;
    for (const [typed, want] of cases) {
      await page.goto(base + '/#/route?name=' + encodeURIComponent(typed));
      await page.waitForSelector('#route-result [data-k="pull"] pre');
      assert.equal(await page.textContent('#route-result [data-k="pull"] pre'), `docker pull ${host}/${want}`, typed);
    }
    await noErrors(page);
    await ctx.close();
  });

  test('one pull of one image is one row of events, its blobs counted and listed', async () => {
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/');
    await page.waitForSelector('table[data-t="events"] tbody tr');
    const grouped = (await api('/api/v1/events?limit=20&group=pull')).events;
    const raw = (await api('/api/v1/events?limit=1000&kind=fetch')).events;
    // A group: every blob of the corrupt image arrived (one after a digest
    // mismatch), all in one row.
    const name = 'quay.io/team/corrupt';
    const g = grouped.find((e) => e.code === 'blob_fetched' && e.repository === name);
    assert.ok(g, 'the pull of ' + name + ' is among the newest rows');
    const blobs = raw.filter((e) => e.code === 'blob_fetched' && e.repository === name);
    assert.ok(blobs.length >= 3, 'three blobs fetched');
    assert.equal(g.count, blobs.length);
    assert.equal(g.bytes, blobs.reduce((a, e) => a + e.bytes, 0));
    assert.equal(grouped.filter((e) => e.code === 'blob_fetched' && e.repository === name).length, 1);
    await eventually(async () => assert.deepEqual(
      await page.$$eval('table[data-t="events"] tbody tr', (rows) => rows.map((r) => Number(r.dataset.count))),
      grouped.map((e) => e.count || 1)), 15000, 500);
    const row = page.locator('table[data-t="events"] tbody tr', { hasText: name }).filter({ has: page.locator('details.evgroup') });
    assert.match(await row.locator('summary').textContent(), new RegExp(`${blobs.length} blobs fetched from upstream`));
    await row.locator('summary').click();
    assert.deepEqual((await row.locator('ul.evblobs code.digest').evaluateAll((e) => e.map((x) => x.title))).sort(),
      blobs.map((e) => e.digest).sort());
    // Opened, it stays open across the next refresh.
    await page.waitForTimeout(5500);
    assert.equal(await row.locator('details.evgroup').getAttribute('open'), '');
    await noErrors(page);
    await ctx.close();
  });

  test('prefetch jobs show where they came from and their failures in words', async () => {
    assert.ok(world.jobs.cli, 'ocimirror prefetch ran as the mirror\'s own job (see the launcher\'s messages)');
    assert.equal(world.jobs.cancelled.length, 2, 'two jobs were cancelled');
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/');
    const cli = `table[data-t="prefetch"] tr[data-id="${world.jobs.cli}"]`;
    await page.waitForSelector(cli);
    assert.equal(await page.getAttribute(cli, 'data-kind'), 'cli');
    const job = (await api('/api/v1/prefetch/' + world.jobs.cli)).job;
    assert.ok(job.blobs > 0 && job.blobs_cached === job.blobs, JSON.stringify(job));
    const text = await page.textContent(cli);
    assert.ok(text.includes('from the command line'), text);
    assert.ok(text.includes(`${job.blobs} blobs, ${job.blobs_cached} already cached`), text);
    const failed = await page.textContent(`table[data-t="prefetch"] tr[data-id="${world.jobs.api}"]`);
    assert.match(failed, /quay\.io\/nope\/missing:1: the mirror answered HTTP 404/);
    for (const id of world.jobs.cancelled) {
      assert.equal(await page.getAttribute(`table[data-t="prefetch"] tr[data-id="${id}"]`, 'data-state'), 'cancelled');
    }
    await noErrors(page);
    await ctx.close();
  });

  test('every page in Chinese: no English text from the server', async () => {
    // Latin words a Chinese page may hold outside literal values (names,
    // digests, commands are marked translate="no" or are <code>): units,
    // protocol and product names.
    const ALLOW = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'HTTP', 'TLS', 'API', 'JSON', 'OCI', 'CA', 'I', 'O',
      'Blob', 'blob', 'digest', 'Docker', 'Hub', 'Podman', 'podman', 'containerd', 'CRI', 'k3s', 'kubeadm',
      'Entrypoint', 'Cmd', 'Labels', 'ns', 'ocimirror'];
    const multi = world.images.multi;
    const child = multi.children['linux/amd64'];
    const evil = world.images.evil;
    const zero = 'sha256:' + '0'.repeat(64);
    const ready = '#view h1';
    const pages = [
      ['/#/', ['table[data-t="events"] tbody tr', 'table[data-t="prefetch"] tbody tr', 'table[data-t="upstreams"] tbody tr', 'svg.chartsvg']],
      ['/#/repos', ['table[data-t="repos"] tbody tr']],
      ['/#/repos?q=coreos', ['table[data-t="repos"] mark']],
      ['/#/repos?q=nothing-is-called-this', ['#repo-results .empty']],
      ['/#/r/quay.io/coreos/etcd', ['table[data-t="tags"] tbody tr']],
      ['/#/r/docker.io/library/never-pulled', ['#view .empty']],
      [`/#/i/${multi.name}@${multi.digest}?tag=${multi.tag}`, ['table[data-t="platforms"] tbody tr']],
      [`/#/i/${multi.name}@${child.digest}`, ['table[data-t="layers"] tbody tr', 'table[data-t="history"]']],
      [`/#/i/${evil.name}@${evil.digest}`, ['table[data-t="labels"] tbody tr']],
      [`/#/i/docker.io/library/never-pulled@${zero}`, ['#view .empty']],
      ['/#/route?name=alpine', ['#route-result .answer[data-kind="search"]']],
      ['/#/route?name=k8s.gcr.io%2Fpause%3A3.9', ['#route-result [data-reason=""][data-raw="prefix"]']],
      ['/#/route?name=coreos%2Fetcd&ns=quay.io', ['#route-result [data-raw="ns"]']],
      ['/#/route?name=coredns', ['#route-result [data-raw="rewrite"]']],
      ['/#/route?name=evil.example.com%2Fx', ['#route-result [data-reason="unknown_registry"]']],
      ['/#/route?name=x&ns=nope.example', ['#route-result [data-reason="unknown_ns"]']],
      ['/#/route?name=UPPER%2Fcase', ['#route-result .error']],
      ...['docker', 'containerd', 'crio', 'podman', 'k3s', 'kubeadm'].map((c) => [`/#/setup?for=${c}`, ['#setup-panel [data-source] .codeblock']]),
      ['/#/no-such-page', [ready]],
    ];
    const { ctx, page } = await newPage(browser, { locale: 'zh-CN' });
    const seen = new Set();
    for (const [url, waits] of pages) {
      await page.goto(base + url);
      await page.waitForSelector('#nav a[data-page="dashboard"]:text-is("概览")');
      for (const w of [ready, ...waits]) await page.waitForSelector(w);
      await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
      const found = await page.evaluate((allow) => {
        const ok = new Set(allow);
        for (const d of document.querySelectorAll('details')) d.open = true;
        const bad = [], codes = [];
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
          const el = n.parentElement;
          if (!el || el.closest('[translate="no"], code, pre, script, style, noscript, template, [hidden]')) continue;
          const words = (n.textContent.match(/[A-Za-z][A-Za-z0-9]*/g) || []).filter((w) => !ok.has(w));
          if (words.length) bad.push(`${words.join(' ')}  ← “${n.textContent.trim().slice(0, 120)}” in <${el.tagName.toLowerCase()} class="${el.className}">`);
        }
        for (const el of document.querySelectorAll('[data-code]')) codes.push(el.dataset.code);
        return { bad, codes };
      }, ALLOW);
      for (const c of found.codes) seen.add(c);
      assert.deepEqual(found.bad, [], `${url}: English text on the Chinese page`);
      await shot(page, 'zh-walk-' + url.replace(/[^a-z0-9]+/gi, '_').slice(0, 60), true);
    }
    // The walk saw every kind of event the world made.
    for (const c of ['blob_fetched', 'blob_failed', 'blob_digest_mismatch', 'image_evicted', 'gc_finished',
      'prefetch_image_done', 'prefetch_image_failed', 'prefetch_job_finished', 'prefetch_job_cancelled']) {
      assert.ok(seen.has(c), `the dashboard showed no ${c} event`);
    }
    await noErrors(page);
    await ctx.close();
  });

  test('the setup page shows configuration snippets for this mirror', async () => {
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/setup?for=docker');
    await page.waitForSelector('#setup-panel [data-source] .codeblock');
    const res = await fetch(base + '/api/v1/client-config?for=docker');
    const fromServer = res.status === 200;
    const body = await res.json();
    assert.equal(await page.getAttribute('#setup-panel [data-source]', 'data-source'), fromServer ? 'server' : 'browser');
    if (fromServer) {
      assert.deepEqual(await rowsAttr(page, '#setup-panel .file', 'data-path'), body.files.map((f) => f.path));
      assert.deepEqual(await page.$$eval('#setup-panel .file pre', (e) => e.map((x) => x.textContent)), body.files.map((f) => f.content));
    } else {
      const daemon = JSON.parse(await page.textContent('#setup-panel .file[data-path="/etc/docker/daemon.json"] pre'));
      assert.deepEqual(daemon['registry-mirrors'], [base]);
    }
    await page.click('.tabs button[data-client="containerd"]');
    await page.waitForSelector('#setup-panel .file[data-path*="certs.d/docker.io/hosts.toml"]');
    const hosts = await page.textContent('#setup-panel .file[data-path*="certs.d/docker.io/hosts.toml"] pre');
    assert.ok(hosts.includes(base.replace(/^http:\/\/|^https:\/\//, '')), hosts);
    for (const c of ['crio', 'podman', 'k3s', 'kubeadm']) {
      await page.click(`.tabs button[data-client="${c}"]`);
      await page.waitForSelector(`#tab-${c}[aria-selected="true"]`);
      await page.waitForSelector('#setup-panel [data-source] .codeblock');
    }
    assert.match(page.url(), /#\/setup\?for=kubeadm$/);
    await shot(page, 'desktop-en-setup');
    await noErrors(page);
    await ctx.close();
  });

  test('the language switches to Chinese and back, and is remembered', async () => {
    const { ctx, page } = await newPage(browser, { locale: 'en-US' });
    await page.goto(base + '/#/');
    await page.waitForSelector('.card[data-k="storage.repositories"] .value');
    assert.equal((await page.textContent('#nav a[data-page="dashboard"]')).trim(), 'Dashboard');
    const dict = await page.evaluate(() => window.OM_I18N);
    assert.deepEqual(Object.keys(dict.zh).sort(), Object.keys(dict.en).sort(), 'both languages have every string');
    for (const [k, v] of Object.entries(dict.zh)) assert.ok(v.length > 0, k);

    await page.selectOption('#lang', 'zh');
    await page.waitForSelector('#nav a[data-page="dashboard"]:text-is("概览")');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await page.evaluate(() => localStorage.getItem('om.lang')), 'zh');
    await page.waitForSelector('.card[data-k="hit_ratio.last_hour"] dt:text-is("命中率（最近一小时）")');
    const st = await api('/api/v1/stats');
    assert.equal(await cardRaw(page, 'storage.repositories'), st.storage.repositories);
    await shot(page, 'desktop-zh-dashboard');
    await page.reload();
    await page.waitForSelector('#nav a[data-page="repos"]:text-is("镜像仓库")');
    await page.goto(base + '/#/repos');
    await page.waitForSelector('nav.pager span:has-text("第 1 /")');
    await shot(page, 'desktop-zh-repos');
    await page.selectOption('#lang', 'en');
    await page.waitForSelector('#nav a[data-page="repos"]:text-is("Repositories")');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await noErrors(page);
    await ctx.close();

    // A browser that prefers Chinese gets Chinese without asking.
    const zh = await newPage(browser, { locale: 'zh-CN' });
    await zh.page.goto(base + '/#/');
    await zh.page.waitForSelector('#nav a[data-page="dashboard"]:text-is("概览")');
    await noErrors(zh.page);
    await zh.ctx.close();
  });

  test('every page fits a 375 px wide phone screen', async () => {
    const multi = world.images.multi;
    const child = multi.children['linux/amd64'];
    for (const lang of ['en', 'zh']) {
      const { ctx, page } = await newPage(browser, { viewport: { width: 375, height: 812 }, locale: lang === 'zh' ? 'zh-CN' : 'en-US' });
      const pages = [
        ['dashboard', '/#/', '.card[data-k="storage.repositories"] .value'],
        ['repos', '/#/repos', 'table[data-t="repos"] tbody tr'],
        ['repository', '/#/r/' + multi.name, 'table[data-t="tags"] tbody tr'],
        ['image', `/#/i/${multi.name}@${child.digest}?tag=${multi.tag}`, 'table[data-t="layers"] tbody tr'],
        ['route', '/#/route?name=nginx', '#route-result .answer'],
        ['setup', '/#/setup?for=containerd', '#setup-panel .codeblock'],
        ['cluster', '/#/cluster', 'table[data-t="replicas"] tbody tr'],
      ];
      for (const [name, url, ready] of pages) {
        await page.goto(base + url);
        await page.waitForSelector(ready);
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(width <= 375, `${lang} ${name}: the page is ${width} px wide`);
        // Accessible basics: every control is labelled, every button and
        // link has a name, images have alt text.
        const unnamed = await page.evaluate(() => [
          ...[...document.querySelectorAll('input, select, textarea')].filter((e) => !e.labels.length && !e.getAttribute('aria-label')).map((e) => 'control ' + e.id),
          ...[...document.querySelectorAll('button, a[href]')].filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim())).map((e) => e.tagName + ' ' + e.outerHTML.slice(0, 60)),
          ...[...document.querySelectorAll('img')].filter((e) => !e.hasAttribute('alt')).map((e) => 'img ' + e.src),
        ]);
        assert.deepEqual(unnamed, [], `${lang} ${name}`);
        await shot(page, `phone-${lang}-${name}`);
      }
      await noErrors(page);
      await ctx.close();
    }
  });

  test('a prefetch started from the dashboard asks for the token, runs and shows its progress', async () => {
    const { ctx, page } = await newPage(browser);
    const image = 'registry.k8s.io/shared:1';
    await page.goto(base + '/#/');
    await page.click('details.pfform summary');
    await page.fill('#pf-images', image);
    await page.fill('#pf-platforms', 'linux/amd64');
    await page.click('details.pfform button[type="submit"]');
    // Starting a prefetch needs the admin token: the page asks for it.
    await page.waitForSelector('#auth:not([hidden]) #auth-token');
    await page.fill('#auth-token', world.token);
    await page.click('#auth-form button[type="submit"]');
    await page.waitForSelector('details.pfform[open]');
    assert.equal(await page.inputValue('#pf-images'), image, 'what was typed survives the token prompt');
    await page.click('details.pfform button[type="submit"]');
    await page.waitForSelector('#pf-result .ok-text');
    const id = (await page.textContent('#pf-result .ok-text')).match(/job (\S+)\)/)[1];
    const job = await eventually(async () => {
      const j = (await api('/api/v1/prefetch')).jobs.find((x) => x.id === id);
      assert.ok(j && j.state === 'done', JSON.stringify(j));
      return j;
    }, 60000, 500);
    assert.deepEqual(job.images, [image]);
    const row = `table[data-t="prefetch"] tr[data-id="${id}"][data-state="done"]`;
    await page.waitForSelector(row, { timeout: 15000 });
    const text = await page.textContent(row);
    assert.ok(text.includes(image) && text.includes(`${job.done} done, ${job.failed} failed of 1`), text);
    assert.equal((await api('/api/v1/repositories?q=registry.k8s.io/shared')).total, 1, 'the image is now cached');
    await noErrors(page);
    await ctx.close();
  });

  test('a download in progress shows on the dashboard with its progress', async () => {
    const big = world.big;
    const layer = big.layers[0];
    const total = big.sizes[layer];
    // The launcher throttles this layer (3 MiB/s): about 11 s in flight.
    const ac = new AbortController();
    const dl = fetch(`${base}/v2/${big.name}/blobs/${layer}`, { signal: ac.signal })
      .then((r) => r.arrayBuffer()).then((b) => b.byteLength).catch(() => -1);
    try {
      await eventually(async () => {
        const r = await api('/api/v1/inflight');
        assert.ok(r.downloads.some((d) => d.digest === layer), 'the download is listed by the API');
      }, 20000, 200);
      const { ctx, page } = await newPage(browser);
      await page.goto(base + '/#/');
      const li = `li.xfer[data-digest="${layer}"]`;
      await page.waitForSelector(li, { timeout: 10000 });
      assert.equal((await page.textContent(`${li} .xfer-head a`)).trim(), big.name);
      const now = Number(await page.getAttribute(`${li} [role=progressbar]`, 'aria-valuenow'));
      assert.ok(now >= 0 && now <= 100, `progress ${now}`);
      const totalText = await page.evaluate((n) => window.omUI.fmtBytes(n), total);
      assert.ok((await page.textContent(li)).includes(totalText), `the total ${totalText} is shown`);
      await shot(page, 'desktop-en-dashboard-inflight');
      // It finishes, and the list empties.
      let timer = null;
      const timeout = new Promise((r) => { timer = setTimeout(() => r('timeout'), 60000); });
      const got = await Promise.race([dl, timeout]);
      clearTimeout(timer);
      assert.equal(got, total, 'the whole layer arrives');
      await page.waitForSelector('[data-t="inflight"] .empty', { timeout: 10000 });
      await noErrors(page);
      await ctx.close();
    } finally {
      ac.abort();
    }
  });
});
