// @vitest-environment node
import { afterEach, describe, expect, it } from 'vitest';
import { createApi } from './client';
import { sendChat } from './chat';
import { json, SESSION, startServer } from '../test/server';

let close: (() => Promise<void>) | null = null;
afterEach(async () => {
  await close?.();
  close = null;
});

describe('chat streaming', () => {
  it('delivers SSE tokens as they arrive and measures them', async () => {
    const srv = await startServer(async (req, res) => {
      if (req.url === '/api/v1/session') return json(res, 200, SESSION);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req-chat' });
      for (const tok of ['Hel', 'lo', ' world']) {
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: tok }, finish_reason: null }] })}\n\n`);
        await new Promise((r) => setTimeout(r, 30));
      }
      res.write(`data: ${JSON.stringify({ choices: [{ delta: {}, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
    close = srv.close;
    const api = createApi(srv.base);
    const seen: { tok: string; at: number }[] = [];
    const t0 = Date.now();
    const m = await sendChat({ model: 'flm://x/y', messages: [{ role: 'user', content: 'hi' }], temperature: 0.7, max_tokens: 10, stream: true }, (tok) => seen.push({ tok, at: Date.now() - t0 }), undefined, api);
    expect(seen.map((s) => s.tok).join('')).toBe('Hello world');
    // The first token came before the stream ended (token by token, not buffered).
    expect(seen[0]!.at).toBeLessThan(seen[2]!.at);
    expect(m.status).toBe(200);
    expect(m.requestId).toBe('req-chat');
    expect(m.tokens).toBe(3);
    expect(m.finishReason).toBe('stop');
    expect(m.ttftMs).not.toBeNull();
    expect(m.tokensPerSec).not.toBeNull();
    const post = srv.seen.find((r) => r.method === 'POST');
    expect(post?.headers['x-flm-csrf']).toBe('csrf-abc');
  });
});
