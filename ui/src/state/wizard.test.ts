// The wizard's rules: pre-check, ports, allow list, private ranges, URLs.
import { describe, expect, it } from 'vitest';
import type { ProxyView } from '../api/types';
import { fixRoute } from './routes';
import { badges, firewallField, isPrivateEntry, onlyPrivate, parseAllow, parsePorts, precheck, preselectTarget, proxyPorts, stepOf, usableUrls } from './wizard';

const stopped: ProxyView = { running: false, mode: null, listen: null, port: null, https_port: null, acme_domain: null, egress: null, certificate: null, started_at: null };
const key = { id: 'k1', label: 'a', created_at: '2026-01-01T00:00:00Z', last_used_at: null, revoked_at: null, models: null, routes: null, expires_at: null, expired: false, tpm: null, monthly_tokens: null };

describe('wizard rules', () => {
  it('pre-check lists what is missing', () => {
    expect(precheck(stopped, [], null)).toEqual(['proxy_stopped', 'no_key', 'no_allow_list', 'no_rate_limit']);
    const local = { ...stopped, running: true, mode: 'local-http', listen: '127.0.0.1', port: 8780 };
    expect(precheck(local, [{ ...key, revoked_at: '2026-01-02T00:00:00Z' }], { ip_whitelist: [] })).toEqual(['loopback_only', 'no_https', 'no_key', 'no_allow_list', 'no_rate_limit']);
    const good = { ...stopped, running: true, mode: 'packaged-ca', listen: '0.0.0.0', port: 8780, https_port: 8781 };
    expect(precheck(good, [key], { ip_whitelist: ['203.0.113.7'], rate_limit: { rpm: 60 } })).toEqual([]);
  });

  it('parses ports and reports what is not a port', () => {
    expect(parsePorts('8780, 8781 8780')).toEqual({ ports: [8780, 8781], invalid: [] });
    expect(parsePorts('0, 70000, x, 443')).toEqual({ ports: [443], invalid: ['0', '70000', 'x'] });
    expect(parsePorts('').ports).toEqual([]);
  });

  it('parses the allow list', () => {
    expect(parseAllow('10.0.0.1\n 2001:db8::/32 ,\n\nnope')).toEqual({ entries: ['10.0.0.1', '2001:db8::/32', 'nope'], invalid: ['nope'] });
  });

  it('knows private and link-local ranges', () => {
    for (const p of ['10.1.2.3', '172.16.0.0/12', '172.31.255.1', '192.168.1.0/24', '169.254.1.1', '127.0.0.1', 'fd00::/8', 'fe80::1', '::1']) expect(isPrivateEntry(p)).toBe(true);
    for (const p of ['203.0.113.7', '172.32.0.1', '10.0.0.0/7', '2001:db8::/32', '0.0.0.0/0', '192.168.0.0/15']) expect(isPrivateEntry(p)).toBe(false);
    expect(onlyPrivate([])).toBe(false);
    expect(onlyPrivate(['192.168.0.0/16', 'fe80::/64'])).toBe(true);
    expect(onlyPrivate(['192.168.0.0/16', '198.51.100.4'])).toBe(false);
  });

  it('takes the proxy ports, else the default', () => {
    expect(proxyPorts({ ...stopped, running: true, port: 9000, https_port: 9001 })).toEqual([9000, 9001]);
    expect(proxyPorts(stopped)).toEqual([8780]);
    expect(proxyPorts(null)).toEqual([8780]);
  });

  it('preselects the platform default, then a found tool', () => {
    expect(preselectTarget(null)).toBe('ufw');
    expect(preselectTarget({ os: 'linux', arch: 'x86_64', default_target: 'nftables', firewalls: [] })).toBe('nftables');
    expect(preselectTarget({ os: 'x', arch: 'y', default_target: null, firewalls: [{ target: 'pf', available: true, path: '/sbin/pfctl' }] })).toBe('pf');
  });

  it('maps server field paths, steps, URLs and badges', () => {
    expect(firewallField('ports[2]')).toBe('ports');
    expect(firewallField('allow[0]')).toBe('allow');
    expect(firewallField('target')).toBe('target');
    expect(stepOf('firewall')).toBe('firewall');
    expect(stepOf('nope')).toBe('welcome');
    expect(usableUrls([{ scope: 'lan', url: 'https://0.0.0.0:8781/v1' }, { scope: 'lan', url: 'https://192.168.1.5:8781/v1' }, { scope: 'this_pc', url: 'http://[::]:8780/v1' }])).toEqual([
      { scope: 'lan', url: 'https://192.168.1.5:8781/v1' },
    ]);
    const dash = { proxy: { ...stopped, running: true, mode: 'packaged-ca', https_port: 8781 }, engines: [], endpoints: [], warnings: [], key_count: 1 };
    expect(badges(dash, { ip_whitelist: ['1.2.3.4'] }, false)).toEqual({ server: true, allowList: true, firewall: false });
  });

  it('the dashboard warning that the wizard fixes links to it', () => {
    expect(fixRoute('/setup')).toBe('/setup');
    expect(fixRoute('/api-setup#keys')).toBe('/api-setup#keys');
    expect(fixRoute('/nowhere')).toBeNull();
  });
});
