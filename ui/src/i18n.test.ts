// The i18n key check: en and ja have the same keys, and every key the code uses exists.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import en from './locales/en.json';
import ja from './locales/ja.json';
import { KNOWN_ERROR_CODES } from './api/errors';
import { PROTECTIONS } from './state/policy';
import { START_MODES } from './state/routes';
import { CAPABILITIES, HELPED_SETTINGS } from './state/values';

function leaves(o: unknown, prefix = ''): string[] {
  if (typeof o !== 'object' || o === null) return [prefix];
  return Object.entries(o as Record<string, unknown>).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'test' ? [] : sources(p);
    return /\.(ts|tsx)$/.test(f) && !/\.test\.tsx?$/.test(f) ? [p] : [];
  });
}

const enKeys = new Set(leaves(en));
const jaKeys = new Set(leaves(ja));

describe('locales', () => {
  it('en and ja have exactly the same keys', () => {
    expect([...enKeys].filter((k) => !jaKeys.has(k))).toEqual([]);
    expect([...jaKeys].filter((k) => !enKeys.has(k))).toEqual([]);
  });

  it('every literal key used in the sources exists', () => {
    const used = new Set<string>();
    for (const file of sources(join(__dirname))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\bt\(\s*['"]([A-Za-z0-9_.]+)['"]/g)) used.add(m[1]!);
      // Keys kept in tables (navigation, durations, ranges): `key: 'a.b'`.
      for (const m of text.matchAll(/\bkey: '([A-Za-z0-9_]+\.[A-Za-z0-9_.]+)'/g)) used.add(m[1]!);
    }
    expect(used.size).toBeGreaterThan(100);
    expect([...used].filter((k) => !enKeys.has(k))).toEqual([]);
  });

  it('every key built at run time exists', () => {
    const dynamic = [
      ...[...KNOWN_ERROR_CODES, 'unknown'].flatMap((c) => [`errors.${c}.message`, `errors.${c}.fix`]),
      ...['healthy', 'degraded', 'down', 'installed_only', 'running', 'stopped', 'temporary', 'permanent', 'counting', 'unknown'].map((s) => `status.${s}`),
      ...['no_api_key', 'no_allow_list', 'no_rate_limit', 'exposed_without_https'].map((c) => `dashboard.warnings.${c}`),
      ...['this_pc', 'lan', 'internet'].map((s) => `dashboard.endpoints.${s}`),
      ...PROTECTIONS.map((p) => `policy.protection.${p}`),
      ...START_MODES.map((m) => `dashboard.proxy.modes.${m}`),
      ...['auth_success', 'auth_failure', 'ip_blocked', 'intrusion', 'anomaly', 'rate_limit'].map((e) => `security.eventType.${e}`),
      ...['low', 'medium', 'high', 'critical'].map((s) => `security.severity.${s}`),
      ...['audit', 'intrusion', 'anomaly'].map((s) => `security.tab.${s}`),
      ...['type', 'count', 'size'].map((s) => `chat.imageProblem.${s}`),
      ...['1h', '24h', '7d'].map((s) => `usage.ranges.${s}`),
      ...['error', 'warn', 'info', 'debug', 'trace'].map((s) => `settings.logLevels.${s}`),
      ...['key', 'model', 'engine'].flatMap((s) => [`usage.groups.${s}`, `usage.byGroup.${s}`]),
      ...CAPABILITIES.map((c) => `values.capability.${c}`),
      ...HELPED_SETTINGS.map((k) => `values.settingHelp.${k}`),
      'values.egress.direct',
    ];
    expect(dynamic.filter((k) => !enKeys.has(k))).toEqual([]);
  });

  it('interpolation placeholders match between languages', () => {
    const get = (o: unknown, k: string) => k.split('.').reduce<unknown>((a, p) => (a as Record<string, unknown>)[p], o) as string;
    const vars = (s: string) => [...s.matchAll(/{{(\w+)}}/g)].map((m) => m[1]).sort().join(',');
    const bad = [...enKeys].filter((k) => vars(get(en, k)) !== vars(get(ja, k)));
    expect(bad).toEqual([]);
  });
});
