// The policy section says "saved" after a save, although the save's new `updated_at`
// remounts the editor (the message once lived in the editor and vanished with it).
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import i18n from '../i18n';
import { Policy } from './ApiSetup';
import { fmtTime } from '../state/format';
import { json, SESSION, startServer } from '../test/server';

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

describe('security policy section', () => {
  it('keeps "Policy saved." visible after the reload that follows a save', async () => {
    await i18n.changeLanguage('en');
    let stored = { policy: { rate_limit: { rpm: 60 } }, updated_at: '2026-12-05T10:00:00Z', problem: null };
    let gets = 0;
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/security/policy' && req.method === 'PUT') {
        stored = { policy: JSON.parse(req.body).policy, updated_at: '2026-12-05T10:05:00Z', problem: null };
        return json(res, 200, { policy: stored.policy, updated_at: stored.updated_at });
      }
      gets += 1;
      return json(res, 200, stored);
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<Policy />);
    const rpm = await screen.findByLabelText(/Requests per minute/);
    fireEvent.change(rpm, { target: { value: '120' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));

    // The reload brought the new policy (and with it a fresh editor) ...
    await waitFor(() => expect(gets).toBeGreaterThanOrEqual(2));
    await screen.findByText(new RegExp(fmtTime('2026-12-05T10:05:00Z').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    expect((screen.getByLabelText(/Requests per minute/) as HTMLInputElement).value).toBe('120');
    // ... and the confirmation is still there.
    expect(screen.getByText('Policy saved.')).toBeTruthy();
    const put = srv.seen.find((r) => r.method === 'PUT');
    expect(JSON.parse(put!.body).policy.rate_limit.rpm).toBe(120);
  });
});
