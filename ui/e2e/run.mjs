#!/usr/bin/env node
// End-to-end run of the app in Debian's Chromium (playwright-core, no browser download)
// against a real FLM daemon.
//
//   FLM_UI_LOGIN_URL   one-time login URL printed by `flm ui --no-open` (required)
//   FLM_UI_BASE_URL    the app's origin (default: origin of the login URL)
//   FLM_E2E_PROXY_URL  the proxy's public URL; enables the live-ban check (a brute-force
//                      client with a wrong key until the daemon bans 127.0.0.1)
//   FLM_E2E_AUDIT_PAGES  how many audit pages to walk (default 200 = 10,000 rows at 50/page)
//   FLM_E2E_AUDIT_MIN_ROWS  fail unless the walk saw at least this many rows (default 0)
//   FLM_E2E_SEED_AUDIT   with FLM_E2E_PROXY_URL: send this many requests (the key the run
//                        creates, 8 at a time) through the proxy first, so the audit log has rows
//   FLM_E2E_ARTIFACTS    where screenshots and report.json go (default e2e/artifacts)
//   FLM_E2E_TIMEOUT_SECS the whole run's deadline: past it the browser is closed, the
//                        report written and the run fails (default 600)
//   CHROMIUM           browser binary (default /usr/bin/chromium)
//
// Per screen and language: axe-core (0 serious/critical), a screenshot, no CSP violation
// in the console, and in Japanese no English word left. Then the flows: key shown once,
// invalid policy field errors, block/unblock, live ban, streaming chat, audit paging.
// Then every scenario module `e2e/scenarios/*.mjs` (sorted by name): its
// `export const screens = [[name, route], ...]` join the per-language screen loop, and
// its `export default async function run({ page, base, step, proxyUrl, secret })` runs
// after the core flows (`secret` is the access key created by the run, or null).
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONTRACT, check } from './contract.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = resolve(process.env.FLM_E2E_ARTIFACTS ?? join(here, 'artifacts'));
mkdirSync(artifacts, { recursive: true });
const runStarted = Date.now();
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const loginUrl = process.env.FLM_UI_LOGIN_URL;
if (!loginUrl) {
  console.error('FLM_UI_LOGIN_URL is required (run `flm ui --no-open` and pass the URL it prints)');
  process.exit(2);
}
const base = (process.env.FLM_UI_BASE_URL ?? new URL(loginUrl).origin).replace(/\/$/, '');
const proxyUrl = process.env.FLM_E2E_PROXY_URL?.replace(/\/$/, '');
const auditPages = Number(process.env.FLM_E2E_AUDIT_PAGES ?? 200);
const auditMinRows = Number(process.env.FLM_E2E_AUDIT_MIN_ROWS ?? 0);
const seedAudit = Math.min(Number(process.env.FLM_E2E_SEED_AUDIT ?? 0), 20000);
const deadlineSecs = Number(process.env.FLM_E2E_TIMEOUT_SECS ?? 600);
let createdSecret = null;

const SCREENS = [
  ['dashboard', '/'],
  ['api-setup', '/api-setup'],
  ['chat-tester', '/chat/tester'],
  ['security-events', '/security/events'],
  ['ip-blocklist', '/security/ip-blocklist'],
  ['ip-allowlist', '/security/ip-whitelist'],
  ['usage', '/usage'],
  ['model-comparison', '/models/comparison'],
  ['settings', '/settings'],
];

// Scenario modules of other parts of the app (see the header).
const scenarioDir = join(here, 'scenarios');
const scenarios = [];
if (existsSync(scenarioDir)) {
  for (const file of readdirSync(scenarioDir).filter((f) => f.endsWith('.mjs')).sort()) {
    const mod = await import(pathToFileURL(join(scenarioDir, file)).href);
    scenarios.push({ name: file.replace(/\.mjs$/, ''), mod });
    for (const screen of mod.screens ?? []) {
      if (!SCREENS.some(([n]) => n === screen[0])) SCREENS.push(screen);
    }
  }
}

const results = [];
const failures = [];
function record(name, ok, detail = {}) {
  results.push({ name, ok, ...detail });
  const mark = ok ? 'ok  ' : 'FAIL';
  console.log(`${mark} ${name}${Object.keys(detail).length ? ' ' + JSON.stringify(detail) : ''}`);
  if (!ok) failures.push(name);
}
async function step(name, fn) {
  try {
    const detail = await fn();
    record(name, true, detail ?? {});
  } catch (e) {
    const shot = `fail-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`;
    await page?.screenshot({ path: join(artifacts, shot), fullPage: true }).catch(() => {});
    record(name, false, { error: e instanceof Error ? e.message : String(e), screenshot: shot });
  }
}

function finish() {
  writeFileSync(join(artifacts, 'report.json'), JSON.stringify({ base, durationMs: Date.now() - runStarted, results }, null, 2));
  const secs = ((Date.now() - runStarted) / 1000).toFixed(1);
  console.log(`\n${results.length - failures.length}/${results.length} passed in ${secs} s; screenshots and report.json in ${artifacts}`);
  if (failures.length) console.log(`failed: ${failures.join('; ')}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
// Reduced motion: the page fade-in would otherwise make axe measure half-transparent text.
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'ja-JP', reducedMotion: 'reduce' });
const page = await context.newPage();
// A hung step must not hang the test command: past the deadline, close the browser
// (playwright also kills it when this process exits) and fail with what was seen.
const deadline = setTimeout(() => {
  record(`the whole run within ${deadlineSecs} s`, false, { error: 'deadline passed' });
  finish();
  void browser.close().finally(() => process.exit(1));
  setTimeout(() => process.exit(1), 5000).unref();
}, deadlineSecs * 1000);
deadline.unref();
// The harness stops a run with SIGTERM (its own timeout): report, close the browser, exit.
process.once('SIGTERM', () => {
  record('the run was not stopped (SIGTERM)', false);
  finish();
  void browser.close().finally(() => process.exit(143));
});

const cspViolations = [];
page.on('console', (m) => {
  if (/Content Security Policy|Refused to (execute|apply|load)/i.test(m.text())) cspViolations.push(m.text());
});

async function settle() {
  await page.waitForSelector('main h1', { timeout: 15000 });
  await page.waitForFunction(() => !document.querySelector('main [role="status"].loading'), null, { timeout: 15000 }).catch(() => {});
}

async function axe() {
  await page.evaluate(axeSource); // evaluated by the debugger protocol: not an inline script, so CSP is untouched
  const res = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0]?.target }));
  });
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

// Words that may stay English in the Japanese UI (spec §6: technical terms, product names).
const ALLOWED_EN = new Set(['FLM', 'API', 'APIマネージャー', 'LLM', 'URL', 'HTTPS', 'HTTP', 'IP', 'ID', 'JSON', 'JSONL', 'CSV', 'CORS', 'ACME', 'PNG', 'JPEG', 'WebP', 'MB', 'MiB', 'ms', 'English', 'Ollama', 'LM', 'Studio', 'vLLM', 'llama', 'cpp', 'flm', 'ui', 'AI', 'p50', 'p95', 'IPv']);
// Every text node of the page, plus placeholders, accessible names and titles, except
// data: `.mono`/code/pre (ids, addresses, model names, JSON), user input values and
// elements marked `translate="no"` (product names, the language's own name).
async function englishLeftovers() {
  const texts = await page.evaluate(() => {
    const skip = (el) => el.closest('.mono, code, pre, kbd, samp, textarea, [translate="no"], script, style, noscript');
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || skip(el) || !n.textContent.trim()) continue;
      if (!el.getClientRects().length && el.tagName !== 'OPTION') continue; // not rendered
      out.push(n.textContent);
    }
    for (const el of document.body.querySelectorAll('[placeholder], [aria-label], [title], img[alt]')) {
      if (skip(el)) continue;
      for (const a of ['placeholder', 'aria-label', 'title', 'alt']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
    // Data shown elsewhere also appears inside accessible names ("Revoke: laptop"): cut it out.
    const data = [...new Set(Array.from(document.body.querySelectorAll('.mono, code, [translate="no"]'), (e) => e.textContent.trim()))]
      .filter((d) => d.length > 2)
      .sort((x, y) => y.length - x.length);
    return out.map((t) => data.reduce((acc, d) => acc.split(d).join(' '), t));
  });
  const bad = new Set();
  for (const t of texts) {
    for (const w of t.match(/[A-Za-z][A-Za-z]{2,}/g) ?? []) if (!ALLOWED_EN.has(w)) bad.add(w);
  }
  return [...bad];
}

async function setLanguage(lng) {
  const saved = page.waitForResponse((r) => r.url().endsWith('/api/v1/config/preferred_language') && r.request().method() === 'PUT');
  saved.catch(() => {}); // awaited below; never an unhandled rejection when the select fails first
  await page.selectOption('#hdr-lang', lng);
  const resp = await saved;
  if (resp.status() !== 200) throw new Error(`PUT preferred_language: HTTP ${resp.status()}`);
  await page.waitForFunction((l) => document.documentElement.lang === l, lng);
}

await step('login with the one-time code', async () => {
  await page.goto(loginUrl);
  await page.waitForURL((u) => u.origin === base && !u.search.includes('code='), { timeout: 15000 });
  await settle();
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === 'flm_session');
  if (!session) throw new Error('no flm_session cookie');
  if (!session.httpOnly || session.sameSite !== 'Strict') throw new Error(`cookie flags: ${JSON.stringify(session)}`);
  return { url: page.url() };
});

await step('contract: every GET answers with the contract\'s shape', async () => {
  const bad = {};
  for (const [path, spec] of Object.entries(CONTRACT)) {
    const r = await page.evaluate(async (p) => {
      const resp = await fetch(p, { headers: { Accept: 'application/json' } });
      return { status: resp.status, body: await resp.json().catch(() => null) };
    }, path);
    const problems = r.status === 200 ? check(r.body, spec) : [`HTTP ${r.status} ${JSON.stringify(r.body)}`];
    if (problems.length) bad[path] = problems.slice(0, 8);
  }
  if (Object.keys(bad).length) throw new Error(JSON.stringify(bad, null, 1));
});

await step('first load on loopback (navigation timing, median of 5 loads)', async () => {
  // Each load is a fresh page of the logged-in context (nothing in the memory cache);
  // the dashboard heading must render within the load.
  const loads = [];
  for (let i = 0; i < 5; i++) {
    const p = await context.newPage();
    const t = Date.now();
    await p.goto(base + '/', { waitUntil: 'load' });
    await p.waitForSelector('main h1', { timeout: 15000 });
    const heading = Date.now() - t;
    const nav = await p.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      return { load: Math.round(n.loadEventEnd - n.startTime), dcl: Math.round(n.domContentLoadedEventEnd - n.startTime) };
    });
    loads.push({ ...nav, heading });
    await p.close();
  }
  const median = (k) => loads.map((l) => l[k]).sort((a, b) => a - b)[2];
  return { loadEventMs: median('load'), domContentLoadedMs: median('dcl'), headingRenderedMs: median('heading') };
});

for (const lng of ['ja', 'en']) {
  await step(`switch language to ${lng}`, async () => {
    await setLanguage(lng);
  });
  for (const [name, route] of SCREENS) {
    await step(`${lng} ${name}: renders, axe, screenshot`, async () => {
      await page.goto(base + route);
      await settle();
      const serious = await axe();
      await page.screenshot({ path: join(artifacts, `${name}-${lng}.png`), fullPage: true });
      if (serious.length) throw new Error(`axe: ${JSON.stringify(serious)}`);
      if (lng === 'ja') {
        const left = await englishLeftovers();
        if (left.length) throw new Error(`English left on the Japanese screen: ${left.join(', ')}`);
      }
    });
  }
}

await step('dark theme: axe on every screen', async () => {
  const saved = page.waitForResponse((r) => r.url().endsWith('/api/v1/config/ui.theme') && r.request().method() === 'PUT');
  saved.catch(() => {});
  await page.selectOption('#hdr-theme', 'dark');
  await saved;
  const bad = [];
  for (const [name, route] of SCREENS) {
    await page.goto(base + route);
    await settle();
    if ((await page.evaluate(() => document.documentElement.dataset.theme)) !== 'dark') throw new Error('theme not dark');
    const serious = await axe();
    await page.screenshot({ path: join(artifacts, `${name}-en-dark.png`), fullPage: true });
    if (serious.length) bad.push({ name, serious });
  }
  const back = page.waitForResponse((r) => r.url().endsWith('/api/v1/config/ui.theme') && r.request().method() === 'PUT');
  back.catch(() => {});
  await page.selectOption('#hdr-theme', 'system');
  await back;
  if (bad.length) throw new Error(`axe: ${JSON.stringify(bad)}`);
});

await step('language persisted through the API', async () => {
  await setLanguage('ja');
  await page.waitForTimeout(300);
  await page.reload();
  await settle();
  const lang = await page.evaluate(() => document.documentElement.lang);
  if (lang !== 'ja') throw new Error(`after reload lang=${lang}`);
  await setLanguage('en');
  await page.waitForTimeout(300);
});

await step('create an access key: shown once, never stored', async () => {
  await page.goto(base + '/api-setup#keys');
  await settle();
  const label = `e2e-${Date.now()}`;
  await page.getByLabel('Name', { exact: true }).fill(label);
  await page.getByRole('button', { name: 'Create access key' }).click();
  const secret = await page.getByTestId('key-secret').inputValue({ timeout: 10000 });
  if (secret.length < 16) throw new Error('secret too short');
  await page.getByRole('button', { name: 'I have copied it' }).click();
  await page.getByRole('cell', { name: label, exact: true }).waitFor();
  const html = await page.content();
  if (html.includes(secret)) throw new Error('secret still in the page');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  if (stored.includes(secret)) throw new Error('secret in web storage');
  if (page.url().includes(secret)) throw new Error('secret in the URL');
  createdSecret = secret;
  return { label };
});

await step('invalid policy: field errors from the daemon next to the fields', async () => {
  await page.goto(base + '/api-setup#policy');
  await settle();
  const rpm = page.getByLabel('Requests per minute');
  await rpm.fill('abc');
  const allow = page.getByLabel(/Allow List/);
  const before = await allow.inputValue();
  await allow.fill(`${before}\nnot-an-ip`.trim());
  await page.locator('#policy').getByRole('button', { name: 'Save' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#policy [aria-invalid="true"]').length >= 2, null, { timeout: 10000 });
  const rid = await page.locator('#policy [data-testid="request-id"]').textContent();
  if (!rid || rid === '—') throw new Error('no request id shown');
  await page.screenshot({ path: join(artifacts, 'policy-field-errors-en.png'), fullPage: true });
  return { requestId: rid };
});

await step('block and unblock an IP', async () => {
  const ip = '203.0.113.77';
  await page.goto(base + '/security/ip-blocklist');
  await settle();
  await page.getByLabel('IP address or range').fill(ip);
  await page.getByRole('button', { name: 'Block', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Block' }).click();
  await page.getByRole('cell', { name: ip, exact: true }).waitFor({ timeout: 10000 });
  await page.getByRole('button', { name: `Unblock: ${ip}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Unblock' }).click();
  await page.getByRole('cell', { name: ip, exact: true }).waitFor({ state: 'detached', timeout: 10000 });
});

if (proxyUrl && seedAudit > 0 && createdSecret) {
  await step(`seed the audit log with ${seedAudit} proxy requests`, async () => {
    const started = Date.now();
    let next = 0;
    const statuses = {};
    const worker = async () => {
      while (next < seedAudit) {
        next += 1;
        const r = await fetch(`${proxyUrl}/v1/models`, { headers: { Authorization: `Bearer ${createdSecret}` } }).catch(() => null);
        const k = r ? String(r.status) : 'error';
        statuses[k] = (statuses[k] ?? 0) + 1;
        await r?.arrayBuffer().catch(() => {});
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return { ms: Date.now() - started, statuses };
  });
}

if (proxyUrl) {
  await step('a ban by a brute-force client appears live (no reload)', async () => {
    // The automatic Block List is off by default on a local server: switch it on in the app.
    await page.goto(base + '/api-setup#policy');
    await settle();
    await page.getByLabel('Automatic Block List').selectOption('on');
    await page.locator('#policy').getByRole('button', { name: 'Save' }).click();
    await page.getByText('Policy saved.').waitFor({ timeout: 10000 });
    await page.goto(base + '/security/ip-blocklist');
    await settle();
    const started = Date.now();
    let banned = false;
    const statuses = [];
    for (let i = 0; i < 60 && !banned; i++) {
      const r = await fetch(`${proxyUrl}/v1/models`, { headers: { Authorization: 'Bearer wrong-key-e2e' } }).catch(() => null);
      statuses.push(r?.status ?? 0);
      if (r && r.status !== 401) banned = true;
      await r?.arrayBuffer().catch(() => {});
    }
    if (!banned) throw new Error(`not banned after ${statuses.length} bad requests: ${statuses.join(',')}`);
    const bannedAt = Date.now();
    await page.getByRole('cell', { name: /^(127\.0\.0\.1|::1)/ }).first().waitFor({ timeout: 5000 });
    const shownMs = Date.now() - bannedAt;
    await page.getByRole('button', { name: /^Unblock: (127\.0\.0\.1|::1)/ }).first().click();
    await page.getByRole('dialog').getByRole('button', { name: 'Unblock' }).click();
    return { requestsMs: bannedAt - started, shownAfterBanMs: shownMs };
  });
}

await step('chat: tokens arrive before the answer ends', async () => {
  await page.goto(base + '/chat/tester');
  await settle();
  if ((await page.locator('#main select').count()) === 0) throw new Error('no AI model to chat with');
  await page.getByLabel('Text of message 1').fill('Count from 1 to 20, separated by spaces.');
  await page.getByLabel('Max tokens').fill('128');
  // Every change of the answer's text is recorded (a MutationObserver, not sampling),
  // with whether the metrics (shown when the answer ended) were there yet.
  const lengths = page.evaluate(
    () =>
      new Promise((resolve) => {
        const seen = [];
        const t0 = performance.now();
        const note = () => {
          const el = document.querySelector('[data-testid="chat-answer"]');
          seen.push({ len: el?.textContent.length ?? 0, done: Boolean(document.querySelector('.metrics')), at: Math.round(performance.now() - t0) });
          if (seen.at(-1).done) {
            obs.disconnect();
            clearTimeout(limit);
            resolve(seen);
          }
        };
        const obs = new MutationObserver(note);
        obs.observe(document.querySelector('main'), { childList: true, subtree: true, characterData: true });
        const limit = setTimeout(() => {
          obs.disconnect();
          resolve(seen);
        }, 60000);
      }),
  );
  // The tiny model writes 128 tokens in ~50 ms: on a busy machine the browser can get
  // them in one read and paint once. A slow link (as a remote user has) spreads the
  // stream over about a second, so the check sees the rendering, not the scheduler.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 24000, uploadThroughput: -1 });
  await page.getByRole('button', { name: 'Send' }).click();
  const seen = await lengths;
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await cdp.detach();
  const partial = seen.filter((s) => !s.done && s.len > 0);
  const distinct = new Set(partial.map((s) => s.len));
  if (!seen.at(-1)?.done) throw new Error('the answer did not end within 60 s');
  const status = await page.locator('.metrics dd').first().textContent();
  if (status !== '200') throw new Error(`HTTP status ${status}`);
  if (distinct.size < 2) throw new Error(`answer did not grow token by token (distinct partial lengths: ${distinct.size})`);
  const firstMs = partial[0].at;
  const endMs = seen.at(-1).at;
  await page.screenshot({ path: join(artifacts, 'chat-streaming-en.png'), fullPage: true });
  return { distinctPartialLengths: distinct.size, firstTextMs: firstMs, answerEndedMs: endMs };
});

await step(`audit log: page through up to ${auditPages} pages`, async () => {
  await page.goto(base + '/security/events');
  await settle();
  const rowCount = () => page.locator('main table tbody tr').count();
  const times = [];
  let pages = 1;
  let rows = await rowCount();
  const next = page.getByRole('button', { name: 'Next' });
  while (pages < auditPages && (await next.isEnabled())) {
    const s = Date.now();
    await next.click();
    pages += 1;
    await page.getByText(`Page ${pages}`, { exact: true }).waitFor();
    await page.waitForFunction(() => !document.querySelector('main [role="status"].loading'));
    times.push(Date.now() - s);
    rows += await rowCount();
  }
  const prev = page.getByRole('button', { name: 'Previous' });
  if (pages > 1 && !(await prev.isEnabled())) throw new Error('previous disabled');
  if (rows < auditMinRows) throw new Error(`only ${rows} rows on ${pages} pages (expected at least ${auditMinRows})`);
  times.sort((a, b) => a - b);
  return { pages, rows, medianPageMs: times[Math.floor(times.length / 2)] ?? null, maxPageMs: times.at(-1) ?? null };
});

await step('audit log: the hash chain verifies', async () => {
  await page.getByRole('button', { name: 'Verify record integrity' }).click();
  const ok = page.getByText(/^The Access Records are intact \((\d[\d,]*) records checked\)\.$/);
  await ok.waitFor({ timeout: 30000 });
  return { message: await ok.textContent() };
});

for (const { name, mod } of scenarios) {
  if (typeof mod.default !== 'function') continue;
  try {
    await page.goto(base + '/');
    await settle();
    await mod.default({ page, base, step, proxyUrl, secret: createdSecret });
  } catch (e) {
    record(`scenario ${name}`, false, { error: e instanceof Error ? e.message : String(e) });
  }
}

record('no CSP violation in the console', cspViolations.length === 0, cspViolations.length ? { cspViolations } : {});

clearTimeout(deadline);
finish();
await browser.close();
process.exit(failures.length ? 1 : 0);
