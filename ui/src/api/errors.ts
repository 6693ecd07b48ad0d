// Error codes the app has a translation and a fix for (errors.<code>.message / .fix).
export const KNOWN_ERROR_CODES = [
  'session_required', 'csrf_failed', 'cross_origin_refused', 'misdirected_host', 'invalid_policy',
  'validation_failed', 'invalid_request', 'not_found', 'proxy_not_running', 'proxy_start_failed',
  'engine_not_found', 'key_not_found', 'invalid_ip', 'internal_error', 'network_error', 'rate_limited',
  'conflict', 'invalid_config',
] as const;

export type KnownErrorCode = (typeof KNOWN_ERROR_CODES)[number];

export function errorCodeKey(code: string): KnownErrorCode | 'unknown' {
  return (KNOWN_ERROR_CODES as readonly string[]).includes(code) ? (code as KnownErrorCode) : 'unknown';
}
