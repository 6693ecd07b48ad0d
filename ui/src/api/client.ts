// Typed client of the app API (notes/UI-CONTRACT.md). Same origin, cookie session; every
// non-GET carries X-FLM-CSRF from GET /api/v1/session. Errors come back as ApiError parsed
// from the envelope, always with the request id the daemon gave them.
import type {
  AllowEntryRequest, AllowList, AnomalyView, AuditView, BlockList, BlockRequest, BlockView, Cleared,
  CreateKeyRequest, Dashboard, PreviewRequest, PreviewView, ProfileList, ProfileView, PromptList, PromptView,
  SaveProfileRequest, SetPromptRequest, EngineList, ErrorEnvelope, EventFilters, FieldError, HealthHistory,
  IntrusionView, KeyCreated, KeyList, KeyRotated, KeyView, ModelList, Page, PolicyDoc, PolicyView,
  ProxyStartRequest, ProxyView, SecuritySummary, Session, SetSettingRequest, Setting, SettingList, Usage,
  UsageGroupBy, UsageRange, VerifyView,
} from './types';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  readonly fields: FieldError[];

  constructor(status: number, code: string, message: string, requestId: string | null, fields: FieldError[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.fields = fields;
  }
}

function isEnvelope(v: unknown): v is ErrorEnvelope {
  if (typeof v !== 'object' || v === null || !('error' in v)) return false;
  const e = (v as { error: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string';
}

/** Turns a non-2xx response into an ApiError (envelope if there is one, else a generic code). */
export async function parseError(resp: Response): Promise<ApiError> {
  const headerId = resp.headers.get('x-request-id');
  let body: unknown = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (isEnvelope(body)) {
    const e = body.error;
    return new ApiError(resp.status, e.code, e.message, e.request_id || headerId, Array.isArray(e.fields) ? e.fields : []);
  }
  return new ApiError(resp.status, `http_${resp.status}`, resp.statusText || `HTTP ${resp.status}`, headerId);
}

type Query = Record<string, string | number | undefined | null>;

function qs(q: Query | undefined): string {
  if (!q) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

export type UnauthorizedListener = () => void;

export function createApi(base = '') {
  let csrf: string | null = null;
  const unauthorized = new Set<UnauthorizedListener>();

  async function send(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') {
      if (csrf === null) await session();
      headers['X-FLM-CSRF'] = csrf ?? '';
    }
    let payload: string | undefined;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    try {
      return await fetch(base + path, { method, headers, body: payload, credentials: 'same-origin', signal });
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network_error', e instanceof Error ? e.message : String(e), null);
    }
  }

  /** Sends a request; on failure throws ApiError. A stale CSRF token is refreshed once. */
  async function raw(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    let resp = await send(method, path, body, signal);
    if (resp.status === 403 && method !== 'GET') {
      const err = await parseError(resp.clone());
      if (err.code === 'csrf_failed') {
        csrf = null;
        resp = await send(method, path, body, signal);
      }
    }
    if (!resp.ok) {
      const err = await parseError(resp);
      if (err.status === 401) unauthorized.forEach((l) => l());
      throw err;
    }
    return resp;
  }

  async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const resp = await raw(method, path, body);
    if (resp.status === 204) return undefined as T;
    return (await resp.json()) as T;
  }

  async function session(): Promise<Session> {
    const resp = await send('GET', '/api/v1/session');
    if (!resp.ok) {
      const err = await parseError(resp);
      if (err.status === 401) unauthorized.forEach((l) => l());
      throw err;
    }
    const s = (await resp.json()) as Session;
    csrf = s.csrf_token;
    return s;
  }

  const enc = encodeURIComponent;

  return {
    base,
    raw,
    session,
    onUnauthorized(l: UnauthorizedListener) {
      unauthorized.add(l);
      return () => {
        unauthorized.delete(l);
      };
    },
    logout: () => json<void>('POST', '/api/v1/logout'),
    dashboard: () => json<Dashboard>('GET', '/api/v1/dashboard'),
    detectEngines: () => json<EngineList>('POST', '/api/v1/engines/detect'),
    startProxy: (req: ProxyStartRequest = {}) => json<ProxyView>('POST', '/api/v1/proxy/start', req),
    stopProxy: () => json<ProxyView>('POST', '/api/v1/proxy/stop'),
    models: () => json<ModelList>('GET', '/api/v1/models'),
    config: () => json<SettingList>('GET', '/api/v1/config'),
    setConfig: (key: string, value: string) => json<Setting>('PUT', `/api/v1/config/${enc(key)}`, { value } satisfies SetSettingRequest),
    keys: () => json<KeyList>('GET', '/api/v1/keys'),
    createKey: (label: string, limits: Omit<CreateKeyRequest, 'label'> = {}) =>
      json<KeyCreated>('POST', '/api/v1/keys', { label, ...limits } satisfies CreateKeyRequest),
    revokeKey: (id: string) => json<KeyView>('POST', `/api/v1/keys/${enc(id)}/revoke`),
    rotateKey: (id: string) => json<KeyRotated>('POST', `/api/v1/keys/${enc(id)}/rotate`),
    policy: () => json<PolicyView>('GET', '/api/v1/security/policy'),
    setPolicy: (policy: PolicyDoc) => json<PolicyView>('PUT', '/api/v1/security/policy', { policy }),
    allowlist: () => json<AllowList>('GET', '/api/v1/security/allowlist'),
    allow: (entry: string) => json<AllowList>('POST', '/api/v1/security/allowlist', { entry } satisfies AllowEntryRequest),
    disallow: (entry: string) => json<AllowList>('DELETE', `/api/v1/security/allowlist/${enc(entry)}`),
    blocklist: () => json<BlockList>('GET', '/api/v1/security/blocklist'),
    block: (ip: string, duration_secs: number | null, reason?: string) =>
      json<BlockView>('POST', '/api/v1/security/blocklist', { ip, duration_secs, reason } satisfies BlockRequest),
    unblock: (ip: string) => json<void>('DELETE', `/api/v1/security/blocklist/${enc(ip)}`),
    clearTemporary: () => json<Cleared>('POST', '/api/v1/security/blocklist/clear-temporary'),
    audit: (f: EventFilters) => json<Page<AuditView>>('GET', `/api/v1/security/audit${qs({ ...f })}`),
    intrusions: (f: EventFilters) => json<Page<IntrusionView>>('GET', `/api/v1/security/intrusions${qs({ ...f })}`),
    anomalies: (f: EventFilters) => json<Page<AnomalyView>>('GET', `/api/v1/security/anomalies${qs({ ...f })}`),
    verifyAudit: () => json<VerifyView>('POST', '/api/v1/security/audit/verify'),
    exportUrl: (format: 'jsonl' | 'csv', f: EventFilters) =>
      `${base}/api/v1/security/audit/export${qs({ format, ...f, cursor: undefined, limit: undefined })}`,
    securitySummary: () => json<SecuritySummary>('GET', '/api/v1/security/summary'),
    usage: (range: UsageRange, group_by: UsageGroupBy) => json<Usage>('GET', `/api/v1/usage${qs({ range, group_by })}`),
    healthHistory: (q: { hours: number; limit: number; engine_id?: string; model?: string }) =>
      json<HealthHistory>('GET', `/api/v1/engines/health-history${qs(q)}`),
    profiles: () => json<ProfileList>('GET', '/api/v1/model-profiles'),
    saveProfile: (req: SaveProfileRequest) => json<ProfileView>('POST', '/api/v1/model-profiles', req),
    deleteProfile: (id: string) => json<void>('DELETE', `/api/v1/model-profiles/${enc(id)}`),
    prompts: () => json<PromptList>('GET', '/api/v1/prompts'),
    setPrompt: (req: SetPromptRequest) => json<PromptView>('PUT', '/api/v1/prompts', req),
    deletePrompt: (apiId: string) => json<void>('DELETE', `/api/v1/prompts/${enc(apiId)}`),
    previewPrompt: (req: PreviewRequest) => json<PreviewView>('POST', '/api/v1/prompts/preview', req),
  };
}

export type Api = ReturnType<typeof createApi>;

/** The app's client: same origin as the page. */
export const api = createApi('');
