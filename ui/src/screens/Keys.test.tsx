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
});
