// Model Profiles and Prompt Templates (docs/guides/profiles-and-prompts.md): both screens
// join the per-language walk (axe, screenshots, no English left in Japanese); then, in
// English: create a profile with a bad then a good setting, see it used as a model id
// through the proxy (real llama-server), a duplicate name refused; a default template
// previewed, saved and then deleted with confirmation; the profile deleted.
export const screens = [
  ['model-profiles', '/models/profiles'],
  ['prompt-templates', '/prompts'],
];

async function settle(page) {
  await page.waitForLoadState('networkidle').catch(() => {});
}

export default async function run({ page, base, step, proxyUrl, secret }) {
  const label = `e2e-${Date.now()}`;
  let model = null;

  await step('model profiles: invalid settings are refused next to the field', async () => {
    const models = await (await page.request.get(`${base}/api/v1/models`)).json();
    model = models.models.find((m) => m.capabilities.includes('chat'))?.id ?? models.models[0]?.id;
    if (!model) throw new Error('no model to make a profile for');
    await page.goto(base + '/models/profiles');
    await settle(page);
    await page.getByLabel('Name', { exact: true }).fill(label);
    await page.getByLabel('AI model', { exact: true }).fill(model);
    const settings = page.getByLabel('Settings', { exact: true });
    await settings.fill('{"temperature": 5}');
    await page.getByRole('button', { name: 'Save profile' }).click();
    await page.waitForFunction(() => document.querySelector('textarea[aria-invalid="true"]') !== null, null, { timeout: 10000 });
    const msg = await page.getByText('must be a number from 0 to 2').textContent();
    await settings.fill('not json');
    await page.getByRole('button', { name: 'Save profile' }).click();
    await page.getByText('The settings are not valid JSON.').waitFor({ timeout: 5000 });
    return { serverMessage: msg };
  });

  await step('model profiles: create, listed, used as a model id through the proxy', async () => {
    await page.getByLabel('Settings', { exact: true }).fill('{"temperature": 0.3, "max_tokens": 3}');
    await page.getByRole('button', { name: 'Save profile' }).click();
    await page.getByRole('cell', { name: `profile/${label}`, exact: true }).waitFor({ timeout: 10000 });
    await page.screenshot({ path: `${process.env.FLM_E2E_ARTIFACTS ?? 'e2e/artifacts'}/model-profiles-created-en.png`, fullPage: true });
    if (!proxyUrl || !secret) return { proxy: 'skipped (no proxy URL or key)' };
    // Applied by the running proxy within a second (change markers).
    const deadline = Date.now() + 3000;
    let status = 0;
    let body = null;
    while (Date.now() < deadline) {
      const r = await fetch(`${proxyUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: `profile/${label}`, messages: [{ role: 'user', content: 'Tell me a story' }] }),
      });
      status = r.status;
      body = await r.json();
      if (status === 200) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    if (status !== 200) throw new Error(`profile chat: HTTP ${status} ${JSON.stringify(body)}`);
    if (body.usage.completion_tokens > 3) throw new Error(`max_tokens of the profile not applied: ${JSON.stringify(body.usage)}`);
    return { completionTokens: body.usage.completion_tokens };
  });

  await step('model profiles: a duplicate name is refused', async () => {
    await page.getByLabel('Name', { exact: true }).fill(label);
    await page.getByLabel('AI model', { exact: true }).fill(model);
    await page.getByLabel('Settings', { exact: true }).fill('{}');
    await page.getByRole('button', { name: 'Save profile' }).click();
    await page.getByText('A profile with this name already exists.').waitFor({ timeout: 10000 });
  });

  await step('prompt templates: preview, save, delete with confirmation', async () => {
    await page.goto(base + '/prompts');
    await settle(page);
    await page.getByLabel('Template text').fill('Answer in one short sentence.');
    await page.getByLabel('Sample message for the preview').fill('Hi there');
    await page.getByRole('button', { name: 'Preview' }).click();
    const items = page.getByTestId('prompt-preview').locator('li');
    await items.nth(1).waitFor({ timeout: 10000 });
    const first = await items.nth(0).textContent();
    if (!first.includes('Answer in one short sentence.')) throw new Error(`preview: ${first}`);
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByRole('cell', { name: 'Answer in one short sentence.', exact: true }).waitFor({ timeout: 10000 });
    await page.screenshot({ path: `${process.env.FLM_E2E_ARTIFACTS ?? 'e2e/artifacts'}/prompt-templates-saved-en.png`, fullPage: true });
    await page.getByRole('button', { name: /^Delete: Default/ }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('cell', { name: 'Answer in one short sentence.', exact: true }).waitFor({ state: 'detached', timeout: 10000 });
  });

  await step('model profiles: delete with confirmation', async () => {
    await page.goto(base + '/models/profiles');
    await settle(page);
    await page.getByRole('button', { name: `Delete: ${label}` }).click();
    await page.getByRole('dialog').getByText(`Delete profile "${label}"?`, { exact: false }).waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('cell', { name: `profile/${label}`, exact: true }).waitFor({ state: 'detached', timeout: 10000 });
  });
}
