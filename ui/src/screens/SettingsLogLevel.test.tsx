// Settings: the log level select shows the daemon's `log.level` and saves it; the screen links
// to Alert Settings.
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import i18n from '../i18n';
import Settings from './Settings';
import { SessionProvider } from '../state/session';
import { json, SESSION, startServer } from '../test/server';

const realFetch = globalThis.fetch;
let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  globalThis.fetch = realFetch;
  await close?.();
  close = null;
});

describe('Settings', () => {
  it('shows and saves log.level, and links to Alert Settings', async () => {
    await i18n.changeLanguage('en');
    let level = 'info';
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      const setting = () => ({ key: 'log.level', value: level, default: 'info', help: '', kind: 'choice', choices: ['error', 'warn', 'info', 'debug', 'trace'] });
      if (req.method === 'PUT' && req.url === '/api/v1/config/log.level') {
        level = (JSON.parse(req.body) as { value: string }).value;
        return json(res, 200, setting());
      }
      return json(res, 200, { settings: [setting()] });
    });
    close = srv.close;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => realFetch(new URL(String(input), srv.base), init);
    render(
      <SessionProvider>
        <MemoryRouter>
          <Settings />
        </MemoryRouter>
      </SessionProvider>,
    );
    const select = (await screen.findByLabelText('Log level')) as HTMLSelectElement;
    expect(select.value).toBe('info');
    fireEvent.change(select, { target: { value: 'debug' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(level).toBe('debug'));
    expect(srv.seen.find((r) => r.method === 'PUT')?.headers['x-flm-csrf']).toBe('csrf-abc');
    expect(screen.getByRole('link', { name: 'Open Alert Settings' }).getAttribute('href')).toBe('/settings/alerts');
  });
});
