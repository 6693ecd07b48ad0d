// Model Profiles: local checks before any request, the daemon's field error under its
// field, then save, and delete after a confirmation (a 204 answer).
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import i18n from '../i18n';
import ModelProfiles from './ModelProfiles';
import PromptTemplates from './PromptTemplates';
import { json, SESSION, startServer } from '../test/server';

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

const view = (label: string, parameters: Record<string, unknown>) => ({
  id: 'mp_000000000001', label, model_id: `profile/${label}`, target: 'flm://llama/tiny', engine_id: 'llama', model: 'tiny', parameters,
  updated_at: '2026-12-06T00:00:00.000Z',
});

describe('Model Profiles', () => {
  it('checks locally, shows the daemon field error, saves, and deletes after confirming', async () => {
    await i18n.changeLanguage('en');
    let profiles: ReturnType<typeof view>[] = [];
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/models') return json(res, 200, { models: [] });
      if (req.method === 'POST') {
        const b = JSON.parse(req.body) as { label: string; parameters: Record<string, unknown> };
        if (b.parameters.temperature === 5) {
          const message = 'parameter `temperature` must be a number from 0 to 2 (got 5)';
          return json(res, 422, { error: { code: 'invalid_parameters', message, request_id: 'r1', fields: [{ path: 'parameters', message }] } });
        }
        profiles = [view(b.label, b.parameters)];
        return json(res, 201, profiles[0]);
      }
      if (req.method === 'DELETE') {
        profiles = [];
        res.writeHead(204, { 'x-request-id': 'r2' });
        res.end();
        return;
      }
      return json(res, 200, { profiles, parameter_names: ['temperature', 'max_tokens'] });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<ModelProfiles />);
    expect(await screen.findByText('No profiles yet.')).toBeTruthy();
    const save = screen.getByRole('button', { name: 'Save profile' });
    fireEvent.change(screen.getByLabelText('Settings'), { target: { value: '[1]' } });
    fireEvent.click(save);
    expect(screen.getByText('Enter a name.')).toBeTruthy();
    expect(screen.getByText('Choose or enter an AI model.')).toBeTruthy();
    expect(screen.getByLabelText('Settings').getAttribute('aria-invalid')).toBe('true');
    expect(srv.seen.filter((r) => r.method === 'POST')).toHaveLength(0);

    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'fast' } });
    fireEvent.change(screen.getByLabelText('AI model'), { target: { value: 'flm://llama/tiny' } });
    fireEvent.change(screen.getByLabelText('Settings'), { target: { value: '{"temperature": 5}' } });
    fireEvent.click(save);
    expect(await screen.findByText(/got 5/)).toBeTruthy();
    expect(screen.getByLabelText('Settings').getAttribute('aria-invalid')).toBe('true');

    fireEvent.change(screen.getByLabelText('Settings'), { target: { value: '{"temperature": 0.3}' } });
    fireEvent.click(save);
    expect(await screen.findByText('temperature=0.3')).toBeTruthy();
    expect(screen.getByRole('status').textContent).toContain('profile/fast');

    fireEvent.click(screen.getByRole('button', { name: 'Delete: fast' }));
    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('Delete profile "fast"?');
    fireEvent.click(screen.getAllByRole('button', { name: 'Delete' }).at(-1)!);
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(await screen.findByText('No profiles yet.')).toBeTruthy();
    expect(srv.seen.find((r) => r.method === 'DELETE')?.url).toBe('/api/v1/model-profiles/mp_000000000001');
  });
});

describe('Prompt Templates', () => {
  it('previews the messages, saves, and deletes after confirming', async () => {
    await i18n.changeLanguage('en');
    let prompts: unknown[] = [];
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/models') return json(res, 200, { models: [] });
      if (req.url === '/api/v1/keys') return json(res, 200, { keys: [] });
      if (req.url === '/api/v1/prompts/preview') {
        const b = JSON.parse(req.body) as { text: string; message: string };
        return json(res, 200, { messages: [{ role: 'system', content: b.text }, { role: 'user', content: b.message }] });
      }
      if (req.method === 'PUT') {
        const b = JSON.parse(req.body) as { text: string };
        const p = { api_id: 'default', scope: 'default', target: null, key_label: null, text: b.text, chars: b.text.length, updated_at: '2026-12-06T00:00:00.000Z' };
        prompts = [p];
        return json(res, 200, p);
      }
      if (req.method === 'DELETE') {
        prompts = [];
        res.writeHead(204, { 'x-request-id': 'r3' });
        res.end();
        return;
      }
      return json(res, 200, { prompts, max_chars: 20 });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<PromptTemplates />);
    expect(await screen.findByText('No templates yet.')).toBeTruthy();
    const text = screen.getByLabelText('Template text');
    fireEvent.change(text, { target: { value: 'x'.repeat(21) } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByText('The template is too long: at most 20 characters.')).toBeTruthy();
    expect(srv.seen.filter((r) => r.method === 'PUT')).toHaveLength(0);

    fireEvent.change(text, { target: { value: 'Be brief.' } });
    fireEvent.change(screen.getByLabelText('Sample message for the preview'), { target: { value: 'Hi' } });
    fireEvent.click(screen.getByRole('button', { name: 'Preview' }));
    const items = (await screen.findByTestId('prompt-preview')).querySelectorAll('li');
    expect(items).toHaveLength(2);
    expect(items[0]!.textContent).toContain('Be brief.');
    expect(items[1]!.textContent).toContain('Hi');

    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByText('Be brief.', { selector: 'td' })).toBeTruthy();
    expect(JSON.parse(srv.seen.find((r) => r.method === 'PUT')!.body)).toEqual({ scope: 'default', target: null, text: 'Be brief.' });

    fireEvent.click(screen.getByRole('button', { name: /^Delete: Default/ }));
    await screen.findByRole('dialog');
    fireEvent.click(screen.getAllByRole('button', { name: 'Delete' }).at(-1)!);
    expect(await screen.findByText('No templates yet.')).toBeTruthy();
    expect(srv.seen.find((r) => r.method === 'DELETE')?.url).toBe('/api/v1/prompts/default');
  });
});
