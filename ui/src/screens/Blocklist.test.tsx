// Blocking asks first, validates the address before any request, and sends the duration.
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import i18n from '../i18n';
import Blocklist from './Blocklist';
import { json, SESSION, startServer } from '../test/server';

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

describe('Block List', () => {
  it('rejects a bad address locally, confirms, then blocks and unblocks', async () => {
    await i18n.changeLanguage('en');
    let entries: { ip: string; kind: string }[] = [];
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.method === 'POST' && req.url === '/api/v1/security/blocklist') {
        const b = JSON.parse(req.body) as { ip: string };
        const view = { ip: b.ip, kind: 'temporary', blocked_until: '2030-01-01T00:00:00Z', failure_count: 0, reason: null, first_failure_at: null, last_failure_at: null };
        entries = [view];
        return json(res, 200, view);
      }
      if (req.method === 'DELETE') {
        entries = [];
        res.writeHead(204, { 'x-request-id': 'r' });
        res.end();
        return;
      }
      return json(res, 200, { entries });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(<Blocklist />);
    expect(await screen.findByText('No blocked IP addresses.')).toBeTruthy();
    const input = screen.getByLabelText('IP address or range');
    fireEvent.change(input, { target: { value: '999.1.1.1' } });
    fireEvent.click(screen.getByRole('button', { name: 'Block' }));
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(screen.queryByRole('dialog')).toBeNull();

    fireEvent.change(input, { target: { value: '203.0.113.9' } });
    fireEvent.change(screen.getByLabelText('How long'), { target: { value: '86400' } });
    fireEvent.click(screen.getByRole('button', { name: 'Block' }));
    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('203.0.113.9');
    expect(srv.seen.filter((r) => r.method === 'POST')).toHaveLength(0);
    fireEvent.click(screen.getAllByRole('button', { name: 'Block' }).at(-1)!);
    expect(await screen.findByText('203.0.113.9')).toBeTruthy();
    expect(JSON.parse(srv.seen.find((r) => r.method === 'POST')!.body)).toEqual({ ip: '203.0.113.9', duration_secs: 86400 });

    fireEvent.click(screen.getByRole('button', { name: 'Unblock: 203.0.113.9' }));
    fireEvent.click(await screen.findByRole('button', { name: 'Unblock' }));
    await waitFor(() => expect(screen.queryByText('203.0.113.9')).toBeNull());
    expect(srv.seen.find((r) => r.method === 'DELETE')?.url).toBe('/api/v1/security/blocklist/203.0.113.9');
  });
});
