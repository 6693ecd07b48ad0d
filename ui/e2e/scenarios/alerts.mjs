// Alerts end to end: a rule saved on the Alert Settings screen fires on a real intrusion
// request sent through the proxy, and the app shows the notice live (no reload).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const locales = {
  en: JSON.parse(readFileSync(join(here, '../../src/locales/en.json'), 'utf8')),
  ja: JSON.parse(readFileSync(join(here, '../../src/locales/ja.json'), 'utf8')),
};

export const screens = [['alert-settings', '/settings/alerts']];

const RULE = process.env.FLM_E2E_ALERT_RULE ?? 'e2e-intrusion';

/** The app API from inside the logged-in page (cookie + CSRF), so nothing leaves the browser. */
async function appApi(page, method, path, body) {
  return page.evaluate(
    async ([method, path, body]) => {
      const s = await (await fetch('/api/v1/session')).json();
      const r = await fetch(path, {
        method,
        headers: { 'Content-Type': 'application/json', 'X-FLM-CSRF': s.csrf_token },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    },
    [method, path, body],
  );
}

export default async function run({ page, base, step, proxyUrl }) {
  const lang = async () => ((await page.evaluate(() => document.documentElement.lang)) === 'ja' ? 'ja' : 'en');

  await step('alerts: a rule is saved on the Alert Settings screen', async () => {
    await page.goto(base + '/settings');
    await page.waitForSelector('main h1', { timeout: 15000 });
    const L = locales[await lang()].alertSettings;
    await page.getByRole('link', { name: L.open }).click();
    await page.getByRole('heading', { name: L.title, level: 1 }).waitFor({ timeout: 15000 });
    await page.getByRole('button', { name: L.addRule }).click();
    const rule = page.getByRole('group').last();
    await rule.getByLabel(L.fields.id, { exact: true }).fill(RULE);
    await rule.getByLabel(L.fields.eventType, { exact: true }).selectOption('intrusion');
    await rule.getByLabel(L.fields.severity, { exact: true }).selectOption('low');
    await rule.getByLabel(L.fields.threshold, { exact: true }).fill('1');
    await rule.getByLabel(L.fields.cooldownSecs, { exact: true }).fill('0');
    // A bad value first: the daemon's message appears under that field.
    await rule.getByLabel(L.fields.windowSecs, { exact: true }).fill('0');
    await page.getByRole('button', { name: L.save }).click();
    await rule.locator('.field-errors').first().waitFor({ timeout: 10000 });
    const invalid = await rule.getByLabel(L.fields.windowSecs, { exact: true }).getAttribute('aria-invalid');
    if (invalid !== 'true') throw new Error('windowSecs 0 was not marked invalid');
    await rule.getByLabel(L.fields.windowSecs, { exact: true }).fill('60');
    await page.getByRole('button', { name: L.save }).click();
    await page.getByText(L.saved).waitFor({ timeout: 10000 });
    const cfg = await appApi(page, 'GET', '/api/v1/config');
    const stored = cfg.body.settings.find((s) => s.key === 'alert_rules');
    if (!JSON.parse(stored.value).rules.some((r) => r.id === RULE)) throw new Error(`rule not stored: ${stored.value}`);
    return { language: await lang() };
  });

  if (!proxyUrl) return;

  await step('alerts: a real intrusion request shows a notice live', async () => {
    // Intrusion detection is off in a local server's default policy: switch it on.
    const before = await appApi(page, 'GET', '/api/v1/security/policy');
    const policy = { ...(before.body?.policy ?? {}) };
    policy.intrusion_detection = { ...(policy.intrusion_detection ?? {}), enabled: true };
    const put = await appApi(page, 'PUT', '/api/v1/security/policy', { policy });
    if (put.status !== 200) throw new Error(`PUT policy: HTTP ${put.status} ${JSON.stringify(put.body)}`);
    await page.goto(base + '/');
    await page.waitForSelector('main h1', { timeout: 15000 });
    // The proxy and the alert watcher pick changes up within about a second.
    await page.waitForTimeout(1500);
    const sent = Date.now();
    const r = await fetch(`${proxyUrl}/v1/models?id=1%27%20or%201%3D1--`).catch((e) => ({ status: String(e) }));
    await r.arrayBuffer?.().catch(() => {});
    const toast = page.getByRole('status').filter({ hasText: RULE });
    await toast.first().waitFor({ timeout: 8000 });
    const shownMs = Date.now() - sent;
    const L = locales[await lang()].alertToasts;
    const link = toast.first().getByRole('link', { name: L.view });
    if ((await link.getAttribute('href')) !== '/security/events') throw new Error('the notice does not link to Security Events');
    await toast.first().getByRole('button', { name: L.dismissLabel.replace('{{id}}', RULE) }).click();
    if (before.body?.policy) await appApi(page, 'PUT', '/api/v1/security/policy', { policy: before.body.policy });
    return { status: r.status, shownMs };
  });
}
