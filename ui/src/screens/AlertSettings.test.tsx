// Alert Settings: the defaults are shown when nothing is stored; rules are added, edited,
// deleted (after a confirmation) and saved as the `alert_rules` document; the daemon's
// errors appear under the field they are about.
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import i18n from '../i18n';
import AlertSettings from './AlertSettings';
import { json, SESSION, startServer } from '../test/server';

const DEFAULT = JSON.stringify({
  rules: [{ id: 'intrusion', eventType: 'intrusion', severity: 'high', threshold: 1, windowSecs: 60, cooldownSecs: 300, enabled: true, notifyUI: true, notifyLog: true }],
});

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

function setting(value: string) {
  return { key: 'alert_rules', value, default: DEFAULT, help: '', kind: 'json', choices: null };
}

describe('Alert Settings', () => {
  it('shows the defaults, edits, deletes and saves, and files server errors per field', async () => {
    await i18n.changeLanguage('en');
    let stored = DEFAULT;
    let reject = true;
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.method === 'PUT' && req.url === '/api/v1/config/alert_rules') {
        const { value } = JSON.parse(req.body) as { value: string };
        if (reject) {
          reject = false;
          return json(res, 422, {
            error: {
              code: 'invalid_setting', message: 'invalid value for `alert_rules`', request_id: 'req-422',
              fields: [{ path: 'rules[1].threshold', message: 'must be a whole number from 1 to 10000' }],
            },
          }, 'req-422');
        }
        stored = value;
        return json(res, 200, setting(value));
      }
      return json(res, 200, { settings: [setting(stored)] });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);

    render(
      <MemoryRouter>
        <AlertSettings />
      </MemoryRouter>,
    );
    expect(await screen.findByText(/these are the default rules/)).toBeTruthy();
    expect(screen.getByRole('group', { name: 'Rule 1: intrusion' })).toBeTruthy();

    fireEvent.click(screen.getByRole('button', { name: 'Add rule' }));
    const added = screen.getByRole('group', { name: 'Rule 2: rule-2' });
    fireEvent.change(within(added).getByLabelText('Event'), { target: { value: 'auth_failure' } });
    fireEvent.change(within(added).getByLabelText('From severity'), { target: { value: 'medium' } });
    fireEvent.change(within(added).getByLabelText('Count'), { target: { value: '0' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save rules' }));

    // The daemon's message appears under the Count of rule 2, linked to its input.
    const count = within(added).getByLabelText('Count');
    await waitFor(() => expect(count.getAttribute('aria-invalid')).toBe('true'));
    const errId = count.getAttribute('aria-describedby')!;
    expect(document.getElementById(errId)?.textContent).toContain('must be a whole number from 1 to 10000');
    expect(screen.getByTestId('request-id').textContent).toBe('req-422');
    const sent = JSON.parse((JSON.parse(srv.seen.filter((r) => r.method === 'PUT')[0]!.body) as { value: string }).value) as { rules: unknown[] };
    expect(sent.rules[1]).toEqual({ id: 'rule-2', eventType: 'auth_failure', severity: 'medium', threshold: 0, windowSecs: 60, cooldownSecs: 300, enabled: true, notifyUI: true, notifyLog: false });

    // Fix it, delete the first rule (confirmed), save.
    fireEvent.change(count, { target: { value: '5' } });
    fireEvent.click(screen.getByRole('button', { name: 'Delete rule intrusion' }));
    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('intrusion');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Delete' }));
    expect(screen.queryByRole('group', { name: 'Rule 1: intrusion' })).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: 'Save rules' }));
    expect(await screen.findByText(/Rules saved/)).toBeTruthy();
    expect(JSON.parse(stored)).toEqual({
      rules: [{ id: 'rule-2', eventType: 'auth_failure', severity: 'medium', threshold: 5, windowSecs: 60, cooldownSecs: 300, enabled: true, notifyUI: true, notifyLog: false }],
    });
    await waitFor(() => expect(screen.queryByText(/these are the default rules/)).toBeNull());
  });

  it('is in Japanese too', async () => {
    await i18n.changeLanguage('ja');
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      return json(res, 200, { settings: [setting('{"rules":[]}')] });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);
    render(
      <MemoryRouter>
        <AlertSettings />
      </MemoryRouter>,
    );
    expect(await screen.findByRole('heading', { name: 'アラート設定' })).toBeTruthy();
    expect(await screen.findByText(/ルールがありません/)).toBeTruthy();
    await i18n.changeLanguage('en');
  });
});
