// Shapes of the contract's GET responses (notes/UI-CONTRACT.md), checked against the real
// daemon in the e2e so a drift between the Rust handlers and src/api/types.ts shows up.
// Spec mini-language: 'string', 'number', 'boolean', 'object', 'any', '?x' = x or null,
// [spec] = array of spec, {k: spec} = object with at least these keys.
const T = '?string';
const engine = {
  id: 'string', kind: 'string', name: 'string', base_url: 'string', status: 'string', latency_ms: '?number',
  checked_at: T, models: [{ id: 'string', name: 'string', capabilities: ['string'] }], capabilities: ['string'], error: T,
};
const proxy = {
  running: 'boolean', mode: T, listen: T, port: '?number', https_port: '?number', acme_domain: T, egress: T,
  certificate: '?object', started_at: T,
};
const filters = '?limit=5';
export const CONTRACT = {
  '/api/v1/session': { csrf_token: 'string', expires_at: 'string', version: 'string', language: T, theme: 'string' },
  '/api/v1/dashboard': { proxy, engines: [engine], endpoints: [{ scope: 'string', url: 'string' }], warnings: [{ code: 'string', fix_route: 'string' }], key_count: 'number' },
  '/api/v1/models': { models: [{ id: 'string', engine_id: 'string', name: 'string', capabilities: ['string'] }] },
  '/api/v1/config': { settings: [{ key: 'string', value: 'string', default: 'string', help: 'string', kind: 'string', choices: '?any' }] },
  '/api/v1/keys': { keys: [{ id: 'string', label: 'string', created_at: 'string', last_used_at: T, revoked_at: T }] },
  // secapi: policy is null when nothing is stored (and `problem` says why when unreadable);
  // intrusion/anomaly ids are the store's string ids.
  '/api/v1/security/policy': { policy: '?object', updated_at: T },
  '/api/v1/security/allowlist': { entries: [{ entry: 'string', added_at: T }] },
  '/api/v1/security/blocklist': {
    entries: [{ ip: 'string', kind: 'string', blocked_until: T, failure_count: 'number', reason: T, first_failure_at: T, last_failure_at: T }],
  },
  [`/api/v1/security/audit${filters}`]: {
    items: [{ id: 'number', at: 'string', event_type: 'string', severity: 'string', ip: T, key_id: T, method: T, endpoint: T, status: '?number', request_id: T, details: '?any' }],
    next_cursor: T,
  },
  [`/api/v1/security/intrusions${filters}`]: {
    items: [{ id: 'any', at: 'string', ip: 'string', pattern: 'string', score: 'number', method: T, path: T, request_id: T }],
    next_cursor: T,
  },
  [`/api/v1/security/anomalies${filters}`]: { items: [{ id: 'any', at: 'string', ip: 'string', kind: 'string', score: 'number', details: '?any' }], next_cursor: T },
  '/api/v1/security/summary': { blocked_ips: 'number', audit_last_24h: 'number', intrusions_last_24h: 'number', anomalies_last_24h: 'number' },
  '/api/v1/usage?range=24h&group_by=model': {
    range: 'string', bucket_secs: 'number',
    groups: [{ group: 'string', label: T, requests: 'number', errors: 'number', tokens_in: 'number', tokens_out: 'number', latency_p50_ms: '?number', latency_p95_ms: '?number', ttft_p50_ms: '?number', ttft_p95_ms: '?number' }],
    series: [{ at: 'string', requests: 'number', errors: 'number', tokens_in: 'number', tokens_out: 'number' }],
  },
  '/api/v1/engines/health-history?hours=24&limit=100': {
    samples: [{ at: 'string', engine_id: 'string', model: T, status: 'string', latency_ms: '?number', error: T }],
    summary: [{ engine_id: 'string', model: T, samples: 'number', success_rate: 'number', avg_latency_ms: '?number', error_rate: 'number' }],
  },
};

/** Mismatches of `value` against `spec`, as "path: expected X, got Y" strings. */
export function check(value, spec, path = '$') {
  if (typeof spec === 'string') {
    const nullable = spec.startsWith('?');
    const t = nullable ? spec.slice(1) : spec;
    if (value === null || value === undefined) return nullable ? [] : [`${path}: expected ${t}, got ${value}`];
    if (t === 'any') return [];
    const actual = Array.isArray(value) ? 'array' : typeof value;
    return actual === t ? [] : [`${path}: expected ${t}, got ${actual}`];
  }
  if (Array.isArray(spec)) {
    if (!Array.isArray(value)) return [`${path}: expected array, got ${value === null ? 'null' : typeof value}`];
    return value.slice(0, 20).flatMap((v, i) => check(v, spec[0], `${path}[${i}]`));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${path}: expected object`];
  return Object.entries(spec).flatMap(([k, s]) => (k in value ? check(value[k], s, `${path}.${k}`) : [`${path}.${k}: missing`]));
}
