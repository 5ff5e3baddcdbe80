// helpers.mjs — shared by the browser tests: start a child process that
// prints a ready line (the world launcher, the mock API), bounded waits,
// pages with error capture, screenshots as artifacts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.join(HERE, 'artifacts');

/* Everything the tests start talks to 127.0.0.1 only, but the rule is that
 * the mirror and its world run in a loopback-only namespace. */
export function requireNetns() {
  if (process.env.OM_IN_NETNS !== '1') {
    throw new Error('run the UI tests inside scripts/netns-run (a loopback-only network namespace)');
  }
}

/* Start argv[0] with argv[1..] in its own process group; resolve with
 * {proc, value} once a stdout line starts with `marker` (value = the rest
 * of that line), reject after timeoutMs or if it exits first.  stderr is
 * copied to ours, prefixed. */
export function startReady(argv, marker, timeoutMs, env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...(env || {}) }, stdio: ['pipe', 'pipe', 'pipe'], detached: true,
    });
    const name = path.basename(argv[argv.length - 1] || argv[0]);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${name}: no "${marker}" line within ${timeoutMs} ms`)), timeoutMs);
    function finish(err, value) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { stopProcess(proc, 5000).finally(() => reject(err)); } else resolve({ proc, value });
    }
    readline.createInterface({ input: proc.stderr }).on('line', (l) => process.stderr.write(`[${name}] ${l}\n`));
    readline.createInterface({ input: proc.stdout }).on('line', (l) => {
      if (l.startsWith(marker)) finish(null, l.slice(marker.length).trim());
      else process.stderr.write(`[${name}] ${l}\n`);
    });
    proc.on('exit', (code, sig) => finish(new Error(`${name} exited (${code ?? sig}) before it was ready`)));
    proc.on('error', (e) => finish(e));
  });
}

/* Close stdin (the launcher's "we are done"), wait up to graceMs, then
 * SIGTERM and SIGKILL the process group.  Resolves with the exit code. */
export function stopProcess(proc, graceMs) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) { resolve(proc.exitCode ?? 1); return; }
    const kill = (sig) => { try { process.kill(-proc.pid, sig); } catch (e) { /* gone */ } };
    const t1 = setTimeout(() => kill('SIGTERM'), graceMs);
    const t2 = setTimeout(() => kill('SIGKILL'), graceMs + 10000);
    proc.once('exit', (code) => { clearTimeout(t1); clearTimeout(t2); resolve(code ?? 1); });
    try { proc.stdin.end(); } catch (e) { kill('SIGTERM'); }
  });
}

/* Retry fn (which throws until its condition holds) every intervalMs, for
 * at most timeoutMs; then throw its last error. */
export async function eventually(fn, timeoutMs = 15000, intervalMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { return await fn(); } catch (e) { last = e; }
    if (Date.now() > end) throw last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function getJSON(base, p, headers) {
  const r = await fetch(base + p, { headers: headers || {} });
  if (!r.ok) throw new Error(`GET ${p} -> ${r.status}`);
  return r.json();
}

/* A new context + page; errors the page logs (uncaught exceptions, CSP
 * refusals, console.error) are collected in page.omErrors.  Failed loads
 * are expected (a 404 answer is a console error in Chromium) and skipped. */
export async function newPage(browser, opts) {
  const o = opts || {};
  const ctx = await browser.newContext({
    viewport: o.viewport || { width: 1280, height: 900 },
    locale: o.locale || 'en-US',
    deviceScaleFactor: 1,
    colorScheme: 'light',
    timezoneId: 'UTC',
  });
  if (o.clipboard) await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: o.clipboard });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.omErrors = [];
  page.on('pageerror', (e) => page.omErrors.push('pageerror: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) page.omErrors.push('console: ' + m.text());
  });
  return { ctx, page };
}

export async function shot(page, name, fullPage) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name + '.png');
  await page.screenshot({ path: file, fullPage: !!fullPage });
  return file;
}
