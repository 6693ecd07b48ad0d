// The policy form shows the daemon's 422 field errors next to the right fields.
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import '../i18n';
import i18n from '../i18n';
import { createApi } from '../api/client';
import { PolicyEditor } from './PolicyEditor';
import { json, SESSION, startServer } from '../test/server';

let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  await close?.();
  close = null;
});

async function serverRejecting() {
  const srv = await startServer((req, res) => {
    if (req.url === '/api/v1/session') return json(res, 200, SESSION);
    json(
      res,
      422,
      {
        error: {
          code: 'invalid_policy',
          message: 'invalid security policy',
          request_id: 'req-policy-422',
          fields: [
            { path: 'rate_limit.rpm', message: 'must be a positive integer' },
            { path: 'ip_whitelist[1]', message: 'not an IP address or CIDR' },
          ],
        },
      },
      'req-policy-422',
    );
  });
  close = srv.close;
  return { srv, api: createApi(srv.base) };
}

function describedText(el: HTMLElement): string {
  return (el.getAttribute('aria-describedby') ?? '')
    .split(' ')
    .map((id) => document.getElementById(id)?.textContent ?? '')
    .join(' ');
}

describe('PolicyEditor', () => {
  it('puts each 422 field error next to its field in the form', async () => {
    await i18n.changeLanguage('en');
    const { srv, api } = await serverRejecting();
    render(<PolicyEditor doc={{ ip_whitelist: ['10.0.0.1'], rate_limit: { rpm: 60 } }} onSave={(d) => api.setPolicy(d)} />);
    fireEvent.change(screen.getByLabelText(/Requests per minute/), { target: { value: '0' } });
    fireEvent.change(screen.getByLabelText(/Allow List/), { target: { value: '10.0.0.1\nnot-an-ip' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));

    const rpm = screen.getByLabelText(/Requests per minute/);
    await waitFor(() => expect(rpm.getAttribute('aria-invalid')).toBe('true'));
    expect(describedText(rpm)).toContain('must be a positive integer');
    const allow = screen.getByLabelText(/Allow List/);
    expect(allow.getAttribute('aria-invalid')).toBe('true');
    expect(describedText(allow)).toContain('not an IP address or CIDR');
    // Burst got no error.
    expect(screen.getByLabelText(/Burst/).getAttribute('aria-invalid')).toBe('false');
    // The translated message and the request id are shown.
    expect(screen.getByRole('alert').textContent).toContain('The security policy has mistakes.');
    expect(screen.getByTestId('request-id').textContent).toBe('req-policy-422');
    // What was sent: the form's values, numbers as numbers.
    const put = srv.seen.find((r) => r.method === 'PUT');
    expect(JSON.parse(put!.body)).toEqual({ policy: { ip_whitelist: ['10.0.0.1', 'not-an-ip'], cors: { allowed_origins: [] }, rate_limit: { rpm: 0 } } });
  });

  it('lists the field errors under the JSON editor in advanced mode', async () => {
    await i18n.changeLanguage('en');
    const { api } = await serverRejecting();
    render(<PolicyEditor doc={{ rate_limit: { rpm: 60 } }} onSave={(d) => api.setPolicy(d)} />);
    fireEvent.click(screen.getByRole('button', { name: 'Advanced (JSON)' }));
    fireEvent.click(screen.getByRole('button', { name: 'Edit JSON' }));
    const area = screen.getByLabelText('Policy (JSON)');
    fireEvent.change(area, { target: { value: '{"rate_limit":{"rpm":0}}' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(area.getAttribute('aria-invalid')).toBe('true'));
    expect(describedText(area)).toContain('rate_limit.rpm');
    expect(describedText(area)).toContain('must be a positive integer');
  });

  it('rejects JSON that does not parse without calling the daemon', async () => {
    await i18n.changeLanguage('en');
    const { srv, api } = await serverRejecting();
    render(<PolicyEditor doc={{}} onSave={(d) => api.setPolicy(d)} />);
    fireEvent.click(screen.getByRole('button', { name: 'Advanced (JSON)' }));
    fireEvent.click(screen.getByRole('button', { name: 'Edit JSON' }));
    fireEvent.change(screen.getByLabelText('Policy (JSON)'), { target: { value: '{oops' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(await screen.findByText(/This is not valid JSON/)).toBeTruthy();
    expect(srv.seen.filter((r) => r.method === 'PUT')).toHaveLength(0);
  });
});
