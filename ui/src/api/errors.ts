// Error codes the app has a translation and a fix for (errors.<code>.message / .fix).
export const KNOWN_ERROR_CODES = [
  'session_required', 'csrf_failed', 'cross_origin_refused', 'misdirected_host', 'invalid_policy',
  'validation_failed', 'invalid_request', 'not_found', 'proxy_not_running', 'proxy_start_failed',
  'engine_not_found', 'key_not_found', 'invalid_ip', 'internal_error', 'network_error', 'rate_limited',
  'conflict', 'invalid_config',
  // flm-core's codes, lower-cased by the daemon (e.g. proxy_port_in_use)
  'already_exists', 'api_key_not_found', 'config_not_set', 'db_error', 'io_error', 'engine_api_error',
  'engine_network_error', 'engine_timeout', 'engine_unsupported', 'invalid_argument', 'read_only_mode',
  'proxy_already_running', 'proxy_daemon_error', 'proxy_invalid_config', 'proxy_port_in_use',
  // the app API's own codes
  'invalid_proxy_config', 'invalid_setting', 'invalid_body', 'invalid_address', 'invalid_duration', 'invalid_label',
  'invalid_cursor', 'invalid_filter', 'invalid_query', 'key_revoked', 'not_blocked', 'not_in_allowlist', 'core_error',
  // the setup wizard's
  'invalid_firewall_request',
  // model profiles and prompt templates
  'profile_exists', 'invalid_model', 'invalid_parameters', 'invalid_target', 'invalid_template',
] as const;

export type KnownErrorCode = (typeof KNOWN_ERROR_CODES)[number];

export function errorCodeKey(code: string): KnownErrorCode | 'unknown' {
  const c = code.toLowerCase();
  return (KNOWN_ERROR_CODES as readonly string[]).includes(c) ? (c as KnownErrorCode) : 'unknown';
}
