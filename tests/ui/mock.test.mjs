// mock.test.mjs — what a real mirror in a test cannot easily hold, played
// by tests/ui/mock/server.py (canned answers that follow docs/admin-api.md,
// the UI files served from ui/ as the build embeds them):
//   - 10,000 repositories: the browser pages and searches on the server,
//     never loads the list, and the DOM holds one page;
//   - hostile strings in upstream error messages and events;
//   - an upstream with several URLs (one backing off) and a pool of
//     accounts (one rate limited), in both languages;
//   - an admin API that wants a token for reads (admin.protect_reads);
//   - a mirror without /api/v1/client-config: snippets built in the page.
//
//   cd tests/ui && ../../scripts/netns-run node --test mock.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { launch } from './browser.mjs';
import { HERE, eventually, getJSON, newPage, requireNetns, shot, startReady, stopProcess } from './helpers.mjs';

const TOKEN = 'mock-secret-token';
const MOCK = path.join(HERE, 'mock', 'server.py');
let browser = null;
const procs = [];

async function mock(...args) {
  const r = await startReady(['python3', '-u', MOCK, ...args], 'MOCK_URL ', 30000);
  procs.push(r.proc);
  return r.value;
}

before(async () => {
  requireNetns();
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  for (const p of procs) await stopProcess(p, 3000);
});

describe('the web UI against the mock API', () => {
  test('10,000 repositories are paged and searched on the server', async () => {
    const base = await mock('--repos', '10000', '--no-client-config');
    const { ctx, page } = await newPage(browser);
    const calls = [];
    page.on('request', (r) => { if (r.url().includes('/api/v1/repositories')) calls.push(new URL(r.url())); });
    await page.goto(base + '/#/repos');
    await page.waitForSelector('table[data-t="repos"] tbody tr');
    const all = await getJSON(base, '/api/v1/repositories?page=1&per_page=50');
    assert.equal(all.total, 10001);
    assert.equal(Number(await page.getAttribute('#repo-status', 'data-raw')), 10001);
    assert.equal(await page.$$eval('table[data-t="repos"] tbody tr', (e) => e.length), 50);
    assert.equal((await page.textContent('nav.pager span')).trim(), 'Page 1 of 201');

    await page.type('#repo-q', 'nginx-0001', { delay: 20 });
    const q = await getJSON(base, '/api/v1/repositories?q=nginx-0001&page=1&per_page=50');
    await eventually(async () => assert.deepEqual(
      await page.$$eval('table[data-t="repos"] tbody tr', (e) => e.map((x) => x.dataset.name)),
      q.repositories.map((r) => r.name)));
    assert.ok(calls.length >= 2);
    for (const u of calls) assert.equal(u.searchParams.get('per_page'), '50', u.href);
    // Deep link to a late page.
    await page.goto(base + '/#/repos?page=200');
    await page.waitForSelector('nav.pager span:text-is("Page 200 of 201")');
    await page.click('nav.pager button:last-child');
    await page.waitForSelector('nav.pager span:text-is("Page 201 of 201")');
    assert.equal(await page.$$eval('table[data-t="repos"] tbody tr', (e) => e.length), 1);
    assert.ok(await page.isDisabled('nav.pager button:last-child'));
    assert.deepEqual(page.omErrors, []);
    await ctx.close();
  });

  test('hostile strings in errors, events and labels are shown as text', async () => {
    const base = await mock('--repos', '50');
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/');
    await page.waitForSelector('table[data-t="upstreams"] tbody tr[data-name="ghcr.io"]');
    await page.waitForSelector('table[data-t="events"] tbody tr');
    await page.click('details.errs summary');
    const html = '<img src=x onerror="window.__pwned=1">';
    assert.ok((await page.textContent('table[data-t="upstreams"]')).includes(html));
    assert.ok((await page.textContent('table[data-t="events"]')).includes(html));
    assert.ok((await page.textContent('details.errs')).includes(html));
    const digest = 'sha256:' + '1'.repeat(64);
    await page.goto(`${base}/#/i/docker.io/library/alpine@${digest}`);
    await page.waitForSelector('table[data-t="labels"] tbody tr');
    assert.ok((await page.textContent('table[data-t="history"]')).includes(html));
    assert.equal(await page.$$eval('img[src="x"]', (e) => e.length), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.deepEqual(page.omErrors, []);
    await ctx.close();
  });

  test('each URL and each pool account of an upstream shows its state', async () => {
    const base = await mock('--repos', '50');
    const { ctx, page } = await newPage(browser, { locale: 'en-US' });
    await page.goto(base + '/#/');
    await page.waitForSelector('table[data-t="upstream-urls"] tbody tr');
    const ups = (await getJSON(base, '/api/v1/upstreams')).upstreams;
    const hub = ups.find((u) => u.name === 'docker.io');
    // Only the upstream with several URLs is listed there, URL by URL.
    assert.deepEqual(await page.$$eval('table[data-t="upstream-urls"] tbody tr', (e) => e.map((x) => x.dataset.url)),
      hub.urls.map((e) => e.url));
    const row = (u) => `table[data-t="upstream-urls"] tr[data-url="${u}"]`;
    assert.equal((await page.textContent(`${row(hub.urls[0].url)} .badge`)).trim(), 'failing');
    assert.ok(await page.isVisible(`${row(hub.urls[0].url)} [data-k="backoff"]`));
    assert.equal((await page.textContent(`${row(hub.urls[1].url)} .badge`)).trim(), 'healthy');
    assert.ok((await page.textContent(row(hub.urls[0].url))).includes('<img src=x onerror="window.__pwned=1">'));
    // The accounts: usernames and limits, never a password (there is none to show).
    const acc = (a) => `table[data-t="upstream-accounts"] tr[data-account="${a}"]`;
    assert.deepEqual(await page.$$eval('table[data-t="upstream-accounts"] tbody tr', (e) => e.map((x) => x.dataset.account)),
      hub.accounts.map((a) => a.username));
    assert.equal((await page.textContent(`${acc('puller1')} .badge`)).trim(), 'in use');
    assert.equal((await page.textContent(`${acc('puller2')} .badge`)).trim(), 'rate limited');
    assert.ok(await page.isVisible(`${acc('puller2')} [data-k="limited"]`));
    // The main table keeps one row per upstream, its health badge first.
    assert.deepEqual(await page.$$eval('table[data-t="upstreams"] tbody tr', (e) => e.map((x) => x.dataset.name)),
      ups.map((u) => u.name));
    await shot(page, 'mock-upstream-pools');
    await page.selectOption('#lang', 'zh');
    await page.waitForSelector('table[data-t="upstream-accounts"] .badge:text-is("已限流")');
    assert.equal((await page.textContent(`${row(hub.urls[0].url)} .badge`)).trim(), '异常');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.deepEqual(page.omErrors, []);
    await page.selectOption('#lang', 'en');
    await ctx.close();
  });

  test('the clients page shows the top clients and who is limited, in both languages', async () => {
    const base = await mock('--repos', '5');
    const { ctx, page } = await newPage(browser, { locale: 'en-US' });
    await page.goto(base + '/#/clients');
    await page.waitForSelector('table[data-t="clients-bytes"] tbody tr');
    const r = await getJSON(base, '/api/v1/clients');
    assert.deepEqual(await page.$$eval('table[data-t="clients-bytes"] tbody tr', (e) => e.map((x) => x.dataset.client)),
      r.top_by_bytes.map((c) => c.client));
    assert.deepEqual(await page.$$eval('table[data-t="clients-requests"] tbody tr', (e) => e.map((x) => x.dataset.client)),
      r.top_by_requests.map((c) => c.client));
    assert.deepEqual(await page.$$eval('table[data-t="clients-bytes"] tbody tr td:nth-child(2) [data-raw]', (e) => e.map((x) => Number(x.dataset.raw))),
      r.top_by_bytes.map((c) => c.bytes_24h));
    const limited = 'table[data-t="clients-limited"] tr[data-client="198.51.100.7"]';
    assert.equal((await page.textContent(`${limited} .badge`)).trim(), 'Bytes per day');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await shot(page, 'mock-clients');
    await page.selectOption('#lang', 'zh');
    await page.waitForSelector(`${limited} .badge:text-is("每天流量")`);
    assert.deepEqual(page.omErrors, []);
    await page.selectOption('#lang', 'en');
    await ctx.close();
    // On a phone, in both languages, the page (and the nav with one more
    // entry) fits 375 px.
    for (const lang of ['en', 'zh']) {
      const phone = await newPage(browser, { viewport: { width: 375, height: 812 }, locale: lang === 'zh' ? 'zh-CN' : 'en-US' });
      await phone.page.goto(base + '/#/clients');
      await phone.page.waitForSelector('table[data-t="clients-bytes"] tbody tr');
      const width = await phone.page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 375, `${lang} clients: the page is ${width} px wide`);
      await shot(phone.page, `mock-phone-${lang}-clients`);
      assert.deepEqual(phone.page.omErrors, []);
      await phone.ctx.close();
    }
  });

  test('a token-protected admin API asks for the token once per tab', async () => {
    const base = await mock('--repos', '50', '--protect', TOKEN);
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/');
    await page.waitForSelector('#auth:not([hidden]) #auth-token');
    await page.waitForSelector('#view .error');
    await shot(page, 'mock-token-prompt');
    await page.fill('#auth-token', TOKEN);
    await page.click('#auth-form button[type="submit"]');
    await page.waitForSelector('.card[data-k="storage.repositories"] .value');
    assert.ok(await page.isHidden('#auth'));
    // A request sent before the token was entered may answer 401 only now:
    // that must not bring the prompt back.
    await page.waitForTimeout(500);
    assert.ok(await page.isHidden('#auth'), 'the prompt came back after the token was given');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('om.token')), TOKEN);
    assert.equal(await page.evaluate(() => localStorage.getItem('om.token')), null, 'not kept beyond the tab');
    await ctx.close();
  });

  test('without a client-config endpoint the setup page builds the snippets itself', async () => {
    const base = await mock('--repos', '5', '--no-client-config');
    const { ctx, page } = await newPage(browser);
    await page.goto(base + '/#/setup?for=podman');
    await page.waitForSelector('#setup-panel [data-source="browser"] .codeblock');
    const conf = await page.textContent('#setup-panel .file pre');
    const host = new URL(base).host;
    assert.ok(conf.includes(`location = "${host}/docker.io"`), conf);
    assert.ok(conf.includes('prefix = "k8s.gcr.io"') && conf.includes(`location = "${host}/registry.k8s.io"`), conf);
    assert.ok(conf.includes('insecure = true'), 'plain http needs insecure = true');
    await page.click('.tabs button[data-client="docker"]');
    await page.waitForSelector('#setup-panel .file[data-path="/etc/docker/daemon.json"]');
    const daemon = JSON.parse(await page.textContent('#setup-panel .file pre'));
    assert.deepEqual(daemon, { 'registry-mirrors': [base], 'insecure-registries': [host] });
    assert.deepEqual(page.omErrors, []);
    await ctx.close();
  });
});
