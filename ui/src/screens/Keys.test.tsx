// The key-created dialog: the secret appears once, can be copied, and is gone after closing.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import i18n from '../i18n';
import { Keys } from './ApiSetup';
import { json, SESSION, startServer } from '../test/server';

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
let copied: string[] = [];

beforeEach(() => {
  copied = [];
  Object.defineProperty(navigator, 'clipboard', { configurable: true, value: { writeText: async (s: string) => void copied.push(s) } });
});
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

describe('access keys', () => {
  it('shows a new key once, copies it, and forgets it on close', async () => {
    await i18n.changeLanguage('en');
    const keys: unknown[] = [];
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/keys' && req.method === 'POST') {
        const key = { id: 'key-1', label: JSON.parse(req.body).label, created_at: '2026-12-05T10:00:00Z', last_used_at: null, revoked_at: null };
        keys.push(key);
        return json(res, 200, { key, secret: 'flm_sk_once_only' });
      }
      return json(res, 200, { keys });
    });
    close = srv.close;
    // The app's client uses same-origin relative URLs; point them at the test daemon.
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<Keys />);
    expect(await screen.findByText('No access keys yet.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'laptop' } });
    fireEvent.click(screen.getByRole('button', { name: 'Create access key' }));

    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('shown only once');
    expect((screen.getByTestId('key-secret') as HTMLInputElement).value).toBe('flm_sk_once_only');
    fireEvent.click(screen.getByRole('button', { name: /^Copy/ }));
    await waitFor(() => expect(copied).toEqual(['flm_sk_once_only']));

    fireEvent.click(screen.getByRole('button', { name: 'I have copied it' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(document.body.innerHTML).not.toContain('flm_sk_once_only');
    expect(await screen.findByText('laptop')).toBeTruthy();
    const post = srv.seen.find((r) => r.method === 'POST');
    expect(post?.headers['x-flm-csrf']).toBe('csrf-abc');
    // Never stored in the browser.
    expect(JSON.stringify({ ...localStorage })).not.toContain('flm_sk');
  });

  it('creates a key limited to models, routes and a lifetime, and lists its limits', async () => {
    await i18n.changeLanguage('en');
    const keys: unknown[] = [];
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/keys' && req.method === 'POST') {
        const body = JSON.parse(req.body);
        const key = {
          id: 'key-2',
          label: body.label,
          created_at: '2026-12-05T10:00:00Z',
          last_used_at: null,
          revoked_at: null,
          models: body.models ?? null,
          routes: body.routes ?? null,
          expires_at: body.expires_in ? '2027-01-04T10:00:00Z' : null,
          expired: false,
          tpm: body.tpm ?? null,
          monthly_tokens: body.monthly_tokens ?? null,
        };
        keys.push(key, { ...key, id: 'key-3', label: 'old', models: null, routes: null, expires_at: '2026-12-01T00:00:00Z', expired: true, tpm: null, monthly_tokens: null });
        return json(res, 200, { key, secret: 'flm_sk_scoped' });
      }
      return json(res, 200, { keys });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<Keys />);
    expect(await screen.findByText('No access keys yet.')).toBeTruthy();
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'rag' } });
    fireEvent.change(screen.getByLabelText('Expires after'), { target: { value: '30d' } });
    fireEvent.change(screen.getByLabelText('Models'), { target: { value: 'flm://ollama-default/*, *embed*,' } });
    fireEvent.change(screen.getByLabelText('Tokens per month'), { target: { value: '500000' } });
    fireEvent.click(screen.getByLabelText('Model list'));
    fireEvent.click(screen.getByLabelText('Embeddings'));
    fireEvent.click(screen.getByRole('button', { name: 'Create access key' }));
    await screen.findByRole('dialog');
    const post = srv.seen.find((r) => r.method === 'POST');
    expect(JSON.parse(post?.body ?? '{}')).toEqual({
      label: 'rag',
      models: ['flm://ollama-default/*', '*embed*'],
      routes: ['embeddings', 'models'],
      expires_in: '30d',
      monthly_tokens: 500000,
    });
    fireEvent.click(screen.getByRole('button', { name: 'I have copied it' }));
    expect(await screen.findByText('flm://ollama-default/*, *embed*')).toBeTruthy();
    expect(screen.getByText('Embeddings, Model list')).toBeTruthy();
    expect(screen.getByText('Expired')).toBeTruthy();
    expect(screen.getAllByText('All models').length).toBe(1);
    expect(screen.getByText(`${(500000).toLocaleString()} / month`)).toBeTruthy();
  });
});
