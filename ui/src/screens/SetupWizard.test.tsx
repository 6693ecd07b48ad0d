// The wizard's forms against a real loopback HTTP server: the firewall preview and its
// field errors (local and from the daemon's 422), the private-range warning, the
// pre-check, and the translations the wizard builds at run time.
import { afterEach, describe, expect, it } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import '../i18n';
import i18n from '../i18n';
import en from '../locales/en.json';
import ja from '../locales/ja.json';
import { createApi } from '../api/client';
import { FIREWALL_TARGETS } from '../api/setup';
import { START_MODES } from '../state/routes';
import { PROBLEMS, STEPS } from '../state/wizard';
import { FirewallStep, PrecheckStep, SecurityStep } from './SetupWizard';
import { json, SESSION, startServer, type Recorded } from '../test/server';

let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  await close?.();
  close = null;
});

const PROXY = { running: true, mode: 'packaged-ca', listen: '0.0.0.0', port: 9780, https_port: 9781, acme_domain: null, egress: null, certificate: null, started_at: null };
const PLATFORM = {
  os: 'linux',
  arch: 'x86_64',
  default_target: 'nftables',
  firewalls: [
    { target: 'ufw', available: false, path: null },
    { target: 'nftables', available: true, path: '/usr/sbin/nft' },
  ],
};

function script(req: { target: string; ports: number[]; allow: string[] }) {
  const ps = req.target === 'powershell';
  return {
    target: req.target,
    shell: ps ? 'powershell' : 'sh',
    filename: `flm-firewall-${req.target}.${ps ? 'ps1' : 'sh'}`,
    script: `# ${req.target} ports ${req.ports.join(',')} from ${req.allow.join(',')}`,
    rollback_filename: `flm-firewall-${req.target}-rollback.${ps ? 'ps1' : 'sh'}`,
    rollback: '# rollback',
    ports: req.ports,
    allow: req.allow,
    warnings: req.allow.length ? [] : [{ code: 'allow_from_anywhere', message: 'open' }],
  };
}

async function daemon(policy: Record<string, unknown> | null = { ip_whitelist: ['203.0.113.0/24'] }) {
  const srv = await startServer((req: Recorded, res) => {
    if (req.url === '/api/v1/session') return json(res, 200, SESSION);
    if (req.url === '/api/v1/setup/platform') return json(res, 200, PLATFORM);
    if (req.url === '/api/v1/dashboard') return json(res, 200, { proxy: PROXY, engines: [], endpoints: [], warnings: [], key_count: 0 });
    if (req.url === '/api/v1/security/policy') return json(res, 200, { policy, updated_at: null, problem: null });
    if (req.url === '/api/v1/keys') return json(res, 200, { keys: [] });
    if (req.url === '/api/v1/setup/firewall') {
      const body = JSON.parse(req.body) as { target: string; ports: number[]; allow: string[] };
      if (body.ports.includes(1)) {
        return json(res, 422, { error: { code: 'invalid_firewall_request', message: 'bad', request_id: 'req-fw', fields: [{ path: 'ports[0]', message: 'port 1 refused by the daemon' }] } }, 'req-fw');
      }
      return json(res, 200, script(body));
    }
    json(res, 404, { error: { code: 'not_found', message: req.url, request_id: 'x' } });
  });
  close = srv.close;
  return { srv, client: createApi(srv.base) };
}

const noop = () => undefined;

describe('SetupWizard', () => {
  it('previews the firewall script with the proxy ports and the allow list, and follows the target', async () => {
    await i18n.changeLanguage('en');
    const { srv, client } = await daemon();
    render(<FirewallStep client={client} go={noop} applied={false} onApplied={noop} />);
    const target = await screen.findByLabelText('Firewall');
    expect((target as HTMLSelectElement).value).toBe('nftables');
    expect((screen.getByLabelText('Ports') as HTMLInputElement).value).toBe('9780, 9781');
    expect((screen.getByLabelText('Allowed IP addresses') as HTMLTextAreaElement).value).toBe('203.0.113.0/24');
    const preview = await screen.findByLabelText('Script flm-firewall-nftables.sh');
    expect((preview as HTMLTextAreaElement).value).toBe('# nftables ports 9780,9781 from 203.0.113.0/24');
    expect(screen.getByRole('button', { name: 'Save flm-firewall-nftables.sh' })).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Save flm-firewall-nftables-rollback.sh' })).toBeTruthy();

    fireEvent.change(target, { target: { value: 'powershell' } });
    const ps = await screen.findByLabelText('Script flm-firewall-powershell.ps1');
    expect((ps as HTMLTextAreaElement).value).toContain('# powershell ports 9780,9781');
    const posts = srv.seen.filter((r) => r.url === '/api/v1/setup/firewall');
    expect(JSON.parse(posts[posts.length - 1]!.body)).toEqual({ target: 'powershell', ports: [9780, 9781], allow: ['203.0.113.0/24'] });
    expect(posts.every((p) => p.headers['x-flm-csrf'] === 'csrf-abc')).toBe(true);
  });

  it('shows bad ports and entries next to their fields, locally and from the daemon', async () => {
    await i18n.changeLanguage('en');
    const { srv, client } = await daemon(null);
    render(<FirewallStep client={client} go={noop} applied={false} onApplied={noop} />);
    const ports = await screen.findByLabelText('Ports');
    // An empty allow list: the warning is shown in the preview.
    await screen.findByText(/these ports accept connections from anywhere/);

    const before = srv.seen.length;
    fireEvent.change(ports, { target: { value: '8780, 70000' } });
    fireEvent.change(screen.getByLabelText('Allowed IP addresses'), { target: { value: '10.0.0.1\nnot-an-ip' } });
    await waitFor(() => expect(ports.getAttribute('aria-invalid')).toBe('true'));
    expect(document.getElementById(ports.getAttribute('aria-describedby')!.split(' ')[1]!)!.textContent).toContain('70000');
    const allow = screen.getByLabelText('Allowed IP addresses');
    expect(allow.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById(allow.getAttribute('aria-describedby')!.split(' ')[1]!)!.textContent).toContain('not-an-ip');
    // Nothing invalid is sent; the stale preview is hidden.
    await new Promise((r) => setTimeout(r, 400));
    expect(srv.seen.length).toBe(before);
    expect(screen.queryByLabelText(/^Script /)).toBeNull();

    // The daemon's own 422 lands on the ports field.
    fireEvent.change(screen.getByLabelText('Allowed IP addresses'), { target: { value: '' } });
    fireEvent.change(ports, { target: { value: '1' } });
    await waitFor(() => expect(ports.getAttribute('aria-invalid')).toBe('true'));
    await screen.findByText('port 1 refused by the daemon');
  });

  it('warns when the allow list holds only private ranges', async () => {
    await i18n.changeLanguage('en');
    const { client } = await daemon({ ip_whitelist: ['192.168.1.0/24', 'fe80::/64'] });
    render(<SecurityStep client={client} go={noop} secret={null} onSecret={noop} />);
    expect((await screen.findByTestId('private-only')).textContent).toContain('add your public IP addresses');
  });

  it('the pre-check lists what is missing with a way to fix it', async () => {
    await i18n.changeLanguage('ja');
    const { client } = await daemon(null);
    const went: string[] = [];
    render(
      <MemoryRouter>
        <PrecheckStep client={client} go={(s) => went.push(s)} />
      </MemoryRouter>,
    );
    await screen.findByText('アクセスキーがないため、サーバーに届く人なら誰でも使えます。');
    const fix = screen.getAllByRole('button', { name: '「セキュリティ」の手順で設定する' });
    expect(fix.length).toBe(3);
    fireEvent.click(fix[0]!);
    expect(went).toEqual(['security']);
    await i18n.changeLanguage('en');
  });

  it('has every key it builds at run time, in both languages', () => {
    const keys = [
      ...STEPS.map((s) => `setupWizard.steps.${s}`),
      ...PROBLEMS.map((p) => `setupWizard.precheck.problems.${p}`),
      ...['server', 'key', 'allowList', 'rateLimit'].map((c) => `setupWizard.precheck.checks.${c}`),
      ...START_MODES.map((m) => `setupWizard.server.modeHelp.${m}`),
      ...['network', 'local'].map((r) => `setupWizard.server.reachOptions.${r}`),
      ...FIREWALL_TARGETS.map((f) => `setupWizard.firewall.targets.${f}`),
      ...['allow_from_anywhere', 'private_ranges_only', 'accept_only'].map((w) => `setupWizard.firewall.warnings.${w}`),
      ...['server', 'allowList', 'firewall'].map((b) => `setupWizard.complete.badge.${b}`),
    ];
    const get = (o: unknown, k: string) => k.split('.').reduce<unknown>((v, p) => (v as Record<string, unknown> | undefined)?.[p], o);
    for (const k of keys) {
      expect(typeof get(en, k), k).toBe('string');
      expect(typeof get(ja, k), k).toBe('string');
    }
  });
});
