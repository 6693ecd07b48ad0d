// The setup wizard's rules, kept out of the components: its steps, the pre-check, the
// port list and allow-list parsing, the private-range check, and the completion badges.
// The daemon validates everything again; this is quick feedback only.
import type { Dashboard, EndpointUrl, KeyView, PolicyDoc, ProxyView } from '../api/types';
import type { FirewallTarget, PlatformView } from '../api/setup';
import { FIREWALL_TARGETS } from '../api/setup';
import { isIpOrCidr } from './ip';

export const STEPS = ['welcome', 'precheck', 'server', 'security', 'firewall', 'complete'] as const;
export type Step = (typeof STEPS)[number];

export function stepOf(raw: string | null): Step {
  return (STEPS as readonly string[]).includes(raw ?? '') ? (raw as Step) : 'welcome';
}

export function nextStep(s: Step): Step {
  const i = STEPS.indexOf(s);
  return STEPS[Math.min(i + 1, STEPS.length - 1)] ?? 'complete';
}

export function prevStep(s: Step): Step {
  const i = STEPS.indexOf(s);
  return STEPS[Math.max(i - 1, 0)] ?? 'welcome';
}

/** Problems the pre-check reports, each with the step that fixes it. */
export type Problem = 'proxy_stopped' | 'loopback_only' | 'no_https' | 'no_key' | 'no_allow_list' | 'no_rate_limit';
export const PROBLEM_STEP: Record<Problem, Step> = {
  proxy_stopped: 'server',
  loopback_only: 'server',
  no_https: 'server',
  no_key: 'security',
  no_allow_list: 'security',
  no_rate_limit: 'security',
};
export const PROBLEMS = Object.keys(PROBLEM_STEP) as Problem[];

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function allowListOf(policy: PolicyDoc | null): string[] {
  const list = policy?.ip_whitelist;
  return Array.isArray(list) ? list.map((x) => String(x)) : [];
}

export function hasRateLimit(policy: PolicyDoc | null): boolean {
  const rpm = obj(policy?.rate_limit).rpm;
  return typeof rpm === 'number' && rpm > 0;
}

/** Listening on loopback only: nobody else can connect. */
export function isLoopbackOnly(proxy: ProxyView): boolean {
  const l = proxy.listen ?? '127.0.0.1';
  return l === '127.0.0.1' || l === '::1' || l === 'localhost' || l.startsWith('127.');
}

export function isHttps(proxy: ProxyView): boolean {
  return proxy.https_port !== null || (proxy.mode !== null && proxy.mode !== 'local-http');
}

/** What is missing before publishing, in the order the wizard fixes it. */
export function precheck(proxy: ProxyView, keys: KeyView[], policy: PolicyDoc | null): Problem[] {
  const out: Problem[] = [];
  if (!proxy.running) out.push('proxy_stopped');
  else {
    if (isLoopbackOnly(proxy)) out.push('loopback_only');
    if (!isHttps(proxy)) out.push('no_https');
  }
  if (!keys.some((k) => k.revoked_at === null && !k.expired)) out.push('no_key');
  if (allowListOf(policy).length === 0) out.push('no_allow_list');
  if (!hasRateLimit(policy)) out.push('no_rate_limit');
  return out;
}

/** The ports the proxy listens on (HTTP, HTTPS), else the default. */
export function proxyPorts(proxy: ProxyView | null, fallback = 8780): number[] {
  const ports = [proxy?.port, proxy?.https_port].filter((p): p is number => typeof p === 'number');
  return ports.length > 0 && proxy?.running ? ports : [fallback];
}

export interface ParsedPorts {
  ports: number[];
  invalid: string[];
}

/** "8780, 8781 8782" → ports (deduplicated, in order) and the tokens that are not ports. */
export function parsePorts(text: string): ParsedPorts {
  const ports: number[] = [];
  const invalid: string[] = [];
  for (const tok of text.split(/[\s,]+/).filter((x) => x !== '')) {
    const n = /^\d{1,5}$/.test(tok) ? Number(tok) : NaN;
    if (Number.isInteger(n) && n >= 1 && n <= 65535) {
      if (!ports.includes(n)) ports.push(n);
    } else invalid.push(tok);
  }
  return { ports, invalid };
}

export interface ParsedAllow {
  entries: string[];
  invalid: string[];
}

/** One entry per line (commas too); entries that are not an address or CIDR range. */
export function parseAllow(text: string): ParsedAllow {
  const entries = text
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter((x) => x !== '');
  return { entries, invalid: entries.filter((e) => !isIpOrCidr(e)) };
}

function v4ToInt(a: string): number | null {
  const parts = a.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

const PRIVATE_V4: [number, number][] = [
  [v4ToInt('10.0.0.0')!, 8],
  [v4ToInt('172.16.0.0')!, 12],
  [v4ToInt('192.168.0.0')!, 16],
  [v4ToInt('169.254.0.0')!, 16],
  [v4ToInt('127.0.0.0')!, 8],
];

/** An address or range inside RFC 1918, link-local, loopback or IPv6 unique/link-local. */
export function isPrivateEntry(entry: string): boolean {
  const [addr = '', prefixText] = entry.trim().split('/');
  if (addr.includes(':')) {
    const lower = addr.toLowerCase();
    const prefix = prefixText === undefined ? 128 : Number(prefixText);
    if (lower === '::1') return prefix === 128;
    const first = parseInt(lower.split(':')[0] || '0', 16);
    if ((first & 0xfe00) === 0xfc00) return prefix >= 7;
    if ((first & 0xffc0) === 0xfe80) return prefix >= 10;
    return false;
  }
  const ip = v4ToInt(addr);
  if (ip === null) return false;
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  return PRIVATE_V4.some(([net, len]) => prefix >= len && (ip >>> (32 - len)) === (net >>> (32 - len)));
}

/** The allow list holds entries, all of them private: the internet cannot connect. */
export function onlyPrivate(entries: string[]): boolean {
  return entries.length > 0 && entries.every(isPrivateEntry);
}

/** The target to preselect: the platform's default, else the first one found, else ufw. */
export function preselectTarget(p: PlatformView | null): FirewallTarget {
  return p?.default_target ?? p?.firewalls.find((f) => f.available)?.target ?? FIREWALL_TARGETS[0] ?? 'ufw';
}

/** Which wizard field a server field path belongs to (`ports[1]` → ports). */
export function firewallField(path: string): 'target' | 'ports' | 'allow' | 'other' {
  if (path.startsWith('ports')) return 'ports';
  if (path.startsWith('allow')) return 'allow';
  if (path === 'target') return 'target';
  return 'other';
}

/** URLs people can use: never a wildcard bind address. */
export function usableUrls(endpoints: EndpointUrl[]): EndpointUrl[] {
  return endpoints.filter((e) => !/\/\/(0\.0\.0\.0|\[::\])(:|\/|$)/.test(e.url));
}

export interface Badges {
  server: boolean;
  allowList: boolean;
  firewall: boolean;
}

export function badges(d: Dashboard | null, policy: PolicyDoc | null, firewallApplied: boolean): Badges {
  return {
    server: d !== null && d.proxy.running && isHttps(d.proxy),
    allowList: allowListOf(policy).length > 0,
    firewall: firewallApplied,
  };
}
