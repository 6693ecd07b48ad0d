// Shapes of the app API, exactly as in notes/UI-CONTRACT.md (snake_case as serde writes them).

export type Language = 'en' | 'ja';
export type Theme = 'light' | 'dark' | 'system';

export interface Session {
  csrf_token: string;
  expires_at: string;
  version: string;
  language: Language | null;
  theme: Theme;
}

export interface FieldError {
  path: string;
  message: string;
}

export interface ErrorEnvelope {
  error: { code: string; message: string; request_id: string; fields?: FieldError[] };
}

export interface EngineModel {
  id: string;
  name: string;
  capabilities: string[];
}

export interface EngineView {
  id: string;
  kind: 'ollama' | 'vllm' | 'lm_studio' | 'llama_cpp' | string;
  name: string;
  base_url: string;
  status: 'healthy' | 'degraded' | 'down' | 'installed_only';
  latency_ms: number | null;
  checked_at: string | null;
  models: EngineModel[];
  capabilities: string[];
  error: string | null;
}

export interface ProxyView {
  running: boolean;
  mode: string | null;
  listen: string | null;
  port: number | null;
  https_port: number | null;
  acme_domain: string | null;
  egress: string | null;
  certificate: { subject: string; not_after: string; days_left: number; self_signed: boolean } | null;
  started_at: string | null;
}

export interface EndpointUrl {
  scope: 'this_pc' | 'lan' | 'internet';
  url: string;
}

export interface SecurityWarning {
  code: 'no_api_key' | 'no_allow_list' | 'no_rate_limit' | 'exposed_without_https';
  fix_route: string;
}

export interface Dashboard {
  proxy: ProxyView;
  engines: EngineView[];
  endpoints: EndpointUrl[];
  warnings: SecurityWarning[];
  key_count: number;
}

export interface ProxyStartRequest {
  mode?: string;
  port?: number;
  listen?: string;
}

export interface ModelView {
  id: string;
  engine_id: string;
  name: string;
  capabilities: string[];
}

export interface Setting {
  key: string;
  value: string;
  default: string;
  help: string;
  kind: 'int' | 'bool' | 'string' | 'choice' | 'json';
  choices: string[] | null;
}

export type EventKind = 'engine' | 'proxy' | 'ban' | 'unblock' | 'keys' | 'policy' | 'config';

export interface KeyView {
  id: string;
  label: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface KeyCreated {
  key: KeyView;
  secret: string;
}

export interface KeyRotated extends KeyCreated {
  revoked_id: string;
}

/** The policy document (validated by the daemon; the form edits known keys only). */
export type PolicyDoc = Record<string, unknown>;

export interface PolicyView {
  /** null when nothing is stored or the stored document is unreadable (then `problem` says why). */
  policy: PolicyDoc | null;
  updated_at: string | null;
  problem?: string | null;
}

export interface AllowEntry {
  entry: string;
  added_at: string | null;
}

export interface BlockView {
  ip: string;
  kind: 'temporary' | 'permanent' | 'counting';
  blocked_until: string | null;
  failure_count: number;
  reason: string | null;
  first_failure_at: string | null;
  last_failure_at: string | null;
}

export interface AuditView {
  id: number;
  at: string;
  event_type: string;
  severity: string;
  ip: string | null;
  key_id: string | null;
  method: string | null;
  endpoint: string | null;
  status: number | null;
  latency_ms?: number | null;
  request_id: string | null;
  details: Record<string, unknown> | null;
}

export interface IntrusionView {
  id: number | string;
  at: string;
  ip: string;
  pattern: string;
  score: number;
  method: string | null;
  path: string | null;
  user_agent?: string | null;
  request_id: string | null;
}

export interface AnomalyView {
  id: number | string;
  at: string;
  ip: string;
  kind: string;
  score: number;
  details: Record<string, unknown> | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface EventFilters {
  limit?: number;
  cursor?: string;
  event_type?: string;
  severity?: string;
  ip?: string;
  key_id?: string;
  since?: string;
  until?: string;
  q?: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  first_bad_id: number | null;
  message: string;
}

export interface SecuritySummary {
  blocked_ips: number;
  audit_last_24h: number;
  intrusions_last_24h: number;
  anomalies_last_24h: number;
}

export type UsageRange = '1h' | '24h' | '7d';
export type UsageGroupBy = 'key' | 'model' | 'engine';

export interface UsageGroup {
  group: string;
  label: string | null;
  requests: number;
  errors: number;
  tokens_in: number;
  tokens_out: number;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  ttft_p50_ms: number | null;
  ttft_p95_ms: number | null;
}

export interface UsagePoint {
  at: string;
  requests: number;
  errors: number;
  tokens_in: number;
  tokens_out: number;
}

export interface Usage {
  range: UsageRange;
  bucket_secs: number;
  groups: UsageGroup[];
  series: UsagePoint[];
}

export interface HealthSample {
  at: string;
  engine_id: string;
  model: string | null;
  status: string;
  latency_ms: number | null;
  error: string | null;
}

export interface HealthSummary {
  engine_id: string;
  model: string | null;
  samples: number;
  success_rate: number;
  avg_latency_ms: number | null;
  error_rate: number;
}

export interface HealthHistory {
  samples: HealthSample[];
  summary: HealthSummary[];
}
