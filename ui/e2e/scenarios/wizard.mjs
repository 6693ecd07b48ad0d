// End-to-end scenario: the setup wizard against the real daemon. Walks Welcome →
// pre-check → server → security (creates a key, shown once) → firewall (a ufw script
// preview containing the proxy's port, then PowerShell, saved as a real download) →
// complete (badges, URLs without 0.0.0.0, "Go to Dashboard").
// The server step is looked at but not submitted: restarting the proxy on 0.0.0.0
// would expose the test machine and break the other scenarios' proxy URL.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const screens = [['setup', '/setup']];

const here = dirname(fileURLToPath(import.meta.url));
const locale = (lng) => JSON.parse(readFileSync(join(here, '..', '..', 'src', 'locales', `${lng === 'ja' ? 'ja' : 'en'}.json`), 'utf8')).setupWizard;
const fill = (s, vars) => s.replace(/\{\{(\w+)\}\}/g, (_, k) => String(vars[k]));

const stepButton = (page, L, s) => page.getByRole('navigation', { name: L.stepsLabel }).getByRole('button', { name: L.steps[s], exact: true });

export default async function run({ page, base, step, proxyUrl }) {
  let L = null;
  let port = proxyUrl ? Number(new URL(proxyUrl).port) : null;

  await step('wizard: welcome, then the pre-check lists what is missing', async () => {
    await page.goto(`${base}/setup`);
    // The app sets <html lang> once the session (with the saved language) is loaded.
    await page.waitForSelector('main h1', { timeout: 15000 });
    const lng = await page.evaluate(() => document.documentElement.lang);
    L = locale(lng);
    await page.getByRole('heading', { level: 1, name: L.title }).waitFor();
    await page.getByRole('button', { name: L.welcome.start }).click();
    await page.getByRole('heading', { level: 2, name: L.precheck.title }).waitFor();
    await page.getByText(`${L.precheck.checks.key}:`).first().waitFor();
    const problems = await page.locator('.wizard-checks .alert-warning').count();
    if (!new URL(page.url()).search.includes('step=precheck')) throw new Error(`no step in the URL: ${page.url()}`);
    return { lng, checksNeedingWork: problems };
  });

  await step('wizard: server step explains the HTTPS modes and shows the proxy', async () => {
    await stepButton(page, L, 'server').click();
    await page.getByRole('heading', { level: 2, name: L.server.title }).waitFor();
    await page.getByText(L.server.modeHelp['packaged-ca']).waitFor();
    const state = await page.getByTestId('wz-proxy-state').textContent();
    if (port === null) {
      const m = /(\d{2,5})/.exec(state ?? '');
      port = m ? Number(m[1]) : 8780;
    }
    return { state };
  });

  await step('wizard: security step creates an access key shown once', async () => {
    await stepButton(page, L, 'security').click();
    await page.getByRole('heading', { level: 2, name: L.security.title }).waitFor();
    await page.getByLabel(L.security.keyLabel).fill('e2e wizard');
    await page.getByRole('button', { name: L.security.createKey }).click();
    const secret = await page.getByTestId('wizard-key-secret').inputValue({ timeout: 10000 });
    if (!secret.startsWith('flm_')) throw new Error(`unexpected key shape: ${secret.slice(0, 8)}…`);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    if (stored.includes(secret)) throw new Error('the key was written to browser storage');
    return { keyPrefix: secret.slice(0, 8) };
  });

  await step('wizard: firewall preview for ufw contains the port, then PowerShell', async () => {
    await stepButton(page, L, 'firewall').click();
    await page.getByRole('heading', { level: 2, name: L.firewall.title }).waitFor();
    const target = page.getByLabel(L.firewall.target, { exact: true });
    const preselected = await target.inputValue();
    await target.selectOption('ufw');
    await page.getByLabel(L.firewall.ports, { exact: true }).fill(String(port));
    const ufw = page.getByLabel(fill(L.firewall.script, { file: 'flm-firewall-ufw.sh' }));
    await page.waitForFunction(
      ([sel, p]) => document.querySelector(sel)?.value.includes(`to any port ${p} comment 'flm'`),
      ['textarea.wizard-script', port],
      { timeout: 10000 },
    );
    const ufwText = await ufw.inputValue();
    if (!ufwText.startsWith('#!/bin/sh') || !ufwText.includes('set -eu')) throw new Error('not a sh script');

    await target.selectOption('powershell');
    const ps = page.getByLabel(fill(L.firewall.script, { file: 'flm-firewall-powershell.ps1' }));
    await ps.waitFor({ timeout: 10000 });
    const psText = await ps.inputValue();
    if (!psText.includes(`-LocalPort ${port}`) || !psText.includes("-Group 'FLM'")) throw new Error(`PowerShell preview: ${psText.slice(0, 200)}`);
    const download = page.waitForEvent('download', { timeout: 10000 });
    await page.getByRole('button', { name: fill(L.firewall.save, { file: 'flm-firewall-powershell.ps1' }) }).click();
    const file = await download;
    if (file.suggestedFilename() !== 'flm-firewall-powershell.ps1') throw new Error(`download name ${file.suggestedFilename()}`);
    const rollback = page.waitForEvent('download', { timeout: 10000 });
    await page.getByRole('button', { name: fill(L.firewall.saveRollback, { file: 'flm-firewall-powershell-rollback.ps1' }) }).click();
    const rb = await rollback;
    await page.getByLabel(L.firewall.applied).check();
    return { preselected, port, download: file.suggestedFilename(), rollback: rb.suggestedFilename() };
  });

  await step('wizard: bad port shows a field error', async () => {
    const ports = page.getByLabel(L.firewall.ports, { exact: true });
    await ports.fill('70000');
    await page.waitForFunction(() => document.querySelector('input[aria-invalid="true"]') !== null, null, { timeout: 5000 });
    await ports.fill(String(port));
    return {};
  });

  await step('wizard: complete shows badges, URLs without 0.0.0.0, and goes to the dashboard', async () => {
    await page.getByRole('button', { name: L.next }).click();
    await page.getByRole('heading', { level: 2, name: L.complete.title }).waitFor();
    await page.getByText(`${L.complete.badge.firewall}: ${L.complete.yes}`).waitFor();
    const codes = await page.locator('.endpoints code').allTextContents();
    if (codes.some((u) => u.includes('0.0.0.0'))) throw new Error(`wildcard URL shown: ${codes.join(' ')}`);
    const key = await page.locator('input[readonly].mono').inputValue();
    if (!key.startsWith('flm_')) throw new Error('the key is not on the summary');
    await page.getByRole('link', { name: L.complete.dashboard }).click();
    await page.waitForURL((u) => u.pathname === '/', { timeout: 10000 });
    return { urls: codes };
  });
}
