// The chat tester's request: POST /api/v1/chat/completions relayed by the daemon to the
// running proxy. With stream=true the body is the proxy's SSE stream, read as it arrives.
import { api, ApiError, type Api } from './client';

export type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature: number;
  max_tokens: number;
  stream: boolean;
}
export interface ChatMetrics {
  status: number;
  requestId: string | null;
  ttftMs: number | null;
  totalMs: number;
  tokens: number;
  tokensPerSec: number | null;
  finishReason: string | null;
}

interface Chunk {
  choices?: { delta?: { content?: string | null }; message?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string; code?: string };
}

/** Splits an SSE byte stream into `data:` payloads. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line.startsWith('data:')) yield line.slice(5).trimStart();
    }
  }
  buf += dec.decode();
  if (buf.startsWith('data:')) yield buf.slice(5).trimStart();
}

export async function sendChat(req: ChatRequest, onToken: (text: string) => void, signal?: AbortSignal, client: Api = api): Promise<ChatMetrics> {
  const t0 = performance.now();
  const resp = await client.raw('POST', '/api/v1/chat/completions', req, signal);
  const requestId = resp.headers.get('x-request-id');
  let ttft: number | null = null;
  let tokens = 0;
  let usageTokens: number | null = null;
  let finishReason: string | null = null;
  const note = (text: string | null | undefined) => {
    if (!text) return;
    if (ttft === null) ttft = performance.now() - t0;
    tokens += 1;
    onToken(text);
  };
  const ctype = resp.headers.get('content-type') ?? '';
  if (req.stream && ctype.includes('text/event-stream') && resp.body) {
    for await (const data of sseData(resp.body)) {
      if (data === '[DONE]') break;
      let chunk: Chunk;
      try {
        chunk = JSON.parse(data) as Chunk;
      } catch {
        continue;
      }
      if (chunk.error) throw new ApiError(resp.status, chunk.error.code ?? 'stream_error', chunk.error.message ?? 'stream error', requestId);
      const c = chunk.choices?.[0];
      note(c?.delta?.content);
      if (c?.finish_reason) finishReason = c.finish_reason;
      if (chunk.usage?.completion_tokens) usageTokens = chunk.usage.completion_tokens;
    }
  } else {
    const body = (await resp.json()) as Chunk;
    const c = body.choices?.[0];
    note(c?.message?.content);
    finishReason = c?.finish_reason ?? null;
    if (body.usage?.completion_tokens) usageTokens = body.usage.completion_tokens;
  }
  const total = performance.now() - t0;
  const count = usageTokens ?? tokens;
  const genMs = ttft === null ? 0 : total - ttft;
  return {
    status: resp.status,
    requestId,
    ttftMs: ttft,
    totalMs: total,
    tokens: count,
    tokensPerSec: genMs > 0 && count > 0 ? (count / genMs) * 1000 : null,
    finishReason,
  };
}
