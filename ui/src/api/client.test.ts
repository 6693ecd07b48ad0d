// @vitest-environment node
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, createApi } from './client';
import { json, SESSION, startServer } from '../test/server';

let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  await close?.();
  close = null;
});

describe('api client', () => {
  it('sends the session CSRF token on every non-GET and none on GET', async () => {
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      if (req.url === '/api/v1/keys' && req.method === 'POST') {
        if (req.headers['x-flm-csrf'] !== 'csrf-abc') return json(res, 403, { error: { code: 'csrf_failed', message: 'no', request_id: 'r1' } });
        return json(res, 200, { key: { id: 'k1', label: 'x', created_at: '2026-01-01T00:00:00Z', last_used_at: null, revoked_at: null, models: null, routes: null, expires_at: null, expired: false, tpm: null, monthly_tokens: null }, secret: 'flm_secret' });
      }
      if (req.url === '/api/v1/keys') return json(res, 200, { keys: [] });
      json(res, 404, { error: { code: 'not_found', message: 'nope', request_id: 'r2' } });
    });
    close = srv.close;
    const api = createApi(srv.base);
    await api.keys();
    const created = await api.createKey('x');
    expect(created.secret).toBe('flm_secret');
    const post = srv.seen.find((r) => r.method === 'POST');
    expect(post?.headers['x-flm-csrf']).toBe('csrf-abc');
    expect(JSON.parse(post?.body ?? '{}')).toEqual({ label: 'x' });
    const get = srv.seen.find((r) => r.url === '/api/v1/keys' && r.method === 'GET');
    expect(get?.headers['x-flm-csrf']).toBeUndefined();
  });

  it('refreshes a stale CSRF token once and retries', async () => {
    let token = 'old';
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') {
        const s = { ...SESSION, csrf_token: token };
        token = 'new';
        return json(res, 200, s);
      }
      if (req.headers['x-flm-csrf'] !== 'new') return json(res, 403, { error: { code: 'csrf_failed', message: 'bad token', request_id: 'r' } });
      return json(res, 200, { cleared: 3 });
    });
    close = srv.close;
    const api = createApi(srv.base);
    await expect(api.clearTemporary()).resolves.toEqual({ cleared: 3 });
    expect(srv.seen.filter((r) => r.method === 'POST')).toHaveLength(2);
  });

  it('parses the error envelope with request id and fields', async () => {
    const srv = await startServer((req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      json(res, 422, { error: { code: 'invalid_policy', message: 'bad', request_id: 'req-422', fields: [{ path: 'rate_limit.rpm', message: 'must be ≥ 1' }] } }, 'req-422');
    });
    close = srv.close;
    const api = createApi(srv.base);
    const err = await api.setPolicy({ rate_limit: { rpm: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(422);
    expect(e.code).toBe('invalid_policy');
    expect(e.requestId).toBe('req-422');
    expect(e.fields).toEqual([{ path: 'rate_limit.rpm', message: 'must be ≥ 1' }]);
  });

  it('keeps the header request id when the body is not an envelope', async () => {
    const srv = await startServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/plain', 'x-request-id': 'req-502' });
      res.end('bad gateway');
    });
    close = srv.close;
    const err = (await createApi(srv.base).dashboard().catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe('http_502');
    expect(err.requestId).toBe('req-502');
  });

  it('tells listeners about 401 session_required', async () => {
    const srv = await startServer((_req, res) => json(res, 401, { error: { code: 'session_required', message: 'login', request_id: 'r401' } }));
    close = srv.close;
    const api = createApi(srv.base);
    let told = 0;
    api.onUnauthorized(() => (told += 1));
    const err = (await api.dashboard().catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe('session_required');
    expect(told).toBe(1);
  });

  it('reports an unreachable daemon as network_error', async () => {
    const srv = await startServer((_req, res) => json(res, 200, {}));
    const base = srv.base;
    await srv.close();
    const err = (await createApi(base).dashboard().catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe('network_error');
  });
});
