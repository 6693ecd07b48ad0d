import { useEffect, useId, useRef, useState } from 'react';
import { Link } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { api, ApiError } from '../api/client';
import { sendChat, type ChatMessage, type ChatMetrics, type ContentPart } from '../api/chat';
import { useResource } from '../api/hooks';
import { ConfirmDialog, Empty, ErrorBox, Loading } from '../components/common';
import { fmtNum } from '../state/format';
import { checkImages, IMAGE_TYPES, MAX_IMAGES, readDataUrl, type Attachment } from '../state/images';

type Role = ChatMessage['role'];
interface Draft {
  id: number;
  role: Role;
  text: string;
}

let nextId = 1;

export default function ChatTester() {
  const { t } = useTranslation();
  const uid = useId();
  const models = useResource(() => api.models(), [], ['engine']);
  const [picked, setModel] = useState('');
  const [messages, setMessages] = useState<Draft[]>(() => [{ id: nextId++, role: 'user', text: '' }]);
  const [temperature, setTemperature] = useState('0.7');
  const [maxTokens, setMaxTokens] = useState('1000');
  const [stream, setStream] = useState(true);
  const [images, setImages] = useState<Attachment[]>([]);
  const [imageProblem, setImageProblem] = useState<string | null>(null);
  const [answer, setAnswer] = useState('');
  const [metrics, setMetrics] = useState<ChatMetrics | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const abort = useRef<AbortController | null>(null);
  const [pendingModel, setPendingModel] = useState<string | null>(null);

  const list = models.data?.models ?? [];
  const model = picked || list[0]?.id || '';
  const selected = list.find((m) => m.id === model);
  const vision = selected?.capabilities.includes('vision_inputs') ?? false;

  useEffect(() => () => abort.current?.abort(), []);

  const temp = Number(temperature);
  const maxT = Number(maxTokens);
  const tempBad = !(temperature.trim() !== '' && temp >= 0 && temp <= 2);
  const maxBad = !(Number.isInteger(maxT) && maxT >= 1);

  const addFiles = async (files: File[]) => {
    const p = checkImages(images, files);
    if (p) {
      setImageProblem(t(`chat.imageProblem.${p}`, { max: MAX_IMAGES }));
      return;
    }
    setImageProblem(null);
    const read = await Promise.all(files.map(readDataUrl));
    setImages((cur) => [...cur, ...read]);
  };

  const send = async (e: React.FormEvent) => {
    e.preventDefault();
    if (tempBad || maxBad || !model) return;
    const out: ChatMessage[] = messages.filter((m) => m.text.trim() !== '').map((m) => ({ role: m.role, content: m.text }));
    if (vision && images.length > 0) {
      let idx = -1;
      out.forEach((m, i) => {
        if (m.role === 'user') idx = i;
      });
      const parts: ContentPart[] = images.map((a) => ({ type: 'image_url', image_url: { url: a.url } }));
      const target = out[idx];
      if (target) target.content = [{ type: 'text', text: String(target.content) }, ...parts];
      else out.push({ role: 'user', content: parts });
    }
    setBusy(true);
    setAnswer('');
    setMetrics(null);
    setError(null);
    const ctl = new AbortController();
    abort.current = ctl;
    try {
      const m = await sendChat({ model, messages: out, temperature: temp, max_tokens: maxT, stream }, (tok) => setAnswer((a) => a + tok), ctl.signal);
      setMetrics(m);
    } catch (err) {
      if (!(err instanceof DOMException && err.name === 'AbortError')) {
        setError(err instanceof ApiError ? err : new ApiError(0, 'network_error', String(err), null));
      }
    } finally {
      setBusy(false);
      abort.current = null;
    }
  };

  const setMsg = (id: number, patch: Partial<Draft>) => setMessages((ms) => ms.map((m) => (m.id === id ? { ...m, ...patch } : m)));

  return (
    <section>
      <h1>{t('chat.title')}</h1>
      <p className="muted">{t('chat.help')}</p>
      {models.loading && !models.data && <Loading />}
      {models.error && <ErrorBox error={models.error} onRetry={models.reload} />}
      {models.data && list.length === 0 && (
        <Empty>
          {t('chat.noModels')} <Link to="/">{t('chat.toDashboard')}</Link>
        </Empty>
      )}
      {list.length > 0 && (
        <form className="card stack" onSubmit={(e) => void send(e)} noValidate>
          <div className="filters">
            <div className="grow">
              <label htmlFor={`${uid}-model`}>{t('chat.model')}</label>
              <select
                id={`${uid}-model`}
                className="input mono"
                value={model}
                onChange={(e) => {
                  const next = list.find((m) => m.id === e.target.value);
                  const nextVision = next?.capabilities.includes('vision_inputs') ?? false;
                  // Spec §3.3: switching to a text-only model with attachments asks first.
                  if (!nextVision && images.length > 0) setPendingModel(e.target.value);
                  else setModel(e.target.value);
                }}
              >
                {list.map((m) => (
                  <option key={m.id} value={m.id}>
                    {m.id}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label htmlFor={`${uid}-temp`}>{t('chat.temperature')}</label>
              <input id={`${uid}-temp`} className="input" inputMode="decimal" value={temperature} onChange={(e) => setTemperature(e.target.value)} aria-invalid={tempBad} aria-describedby={tempBad ? `${uid}-temp-err` : undefined} />
              {tempBad && (
                <p id={`${uid}-temp-err`} className="error-text small">
                  {t('chat.temperatureInvalid')}
                </p>
              )}
            </div>
            <div>
              <label htmlFor={`${uid}-max`}>{t('chat.maxTokens')}</label>
              <input id={`${uid}-max`} className="input" inputMode="numeric" value={maxTokens} onChange={(e) => setMaxTokens(e.target.value)} aria-invalid={maxBad} aria-describedby={maxBad ? `${uid}-max-err` : undefined} />
              {maxBad && (
                <p id={`${uid}-max-err`} className="error-text small">
                  {t('chat.maxTokensInvalid')}
                </p>
              )}
            </div>
            <div className="checkbox align-end">
              <input id={`${uid}-stream`} type="checkbox" checked={stream} onChange={(e) => setStream(e.target.checked)} />
              <label htmlFor={`${uid}-stream`}>{t('chat.stream')}</label>
            </div>
          </div>
          <fieldset>
            <legend>{t('chat.messages')}</legend>
            {messages.map((m, i) => (
              <div key={m.id} className="message-row">
                <div>
                  <label htmlFor={`${uid}-role-${m.id}`}>{t('chat.role', { n: i + 1 })}</label>
                  <select id={`${uid}-role-${m.id}`} className="input" value={m.role} onChange={(e) => setMsg(m.id, { role: e.target.value as Role })}>
                    <option value="system">{t('chat.roles.system')}</option>
                    <option value="user">{t('chat.roles.user')}</option>
                    <option value="assistant">{t('chat.roles.assistant')}</option>
                  </select>
                </div>
                <div className="grow">
                  <label htmlFor={`${uid}-text-${m.id}`}>{t('chat.content', { n: i + 1 })}</label>
                  <textarea id={`${uid}-text-${m.id}`} className="input" rows={3} value={m.text} onChange={(e) => setMsg(m.id, { text: e.target.value })} />
                </div>
                <button
                  type="button"
                  className="btn btn-secondary btn-small align-end"
                  onClick={() => setMessages((ms) => ms.filter((x) => x.id !== m.id))}
                  disabled={messages.length === 1}
                  aria-label={t('chat.removeMessage', { n: i + 1 })}
                >
                  {t('common.delete')}
                </button>
              </div>
            ))}
            <button type="button" className="btn btn-secondary" onClick={() => setMessages((ms) => [...ms, { id: nextId++, role: 'user', text: '' }])}>
              {t('chat.addMessage')}
            </button>
          </fieldset>
          {vision && (
            <fieldset>
              <legend>{t('chat.images')}</legend>
              <p id={`${uid}-img-help`} className="muted small">
                {t('chat.imagesHelp', { max: MAX_IMAGES })}
              </p>
              {/* The native file button's text comes from the browser's language; a styled label keeps it in the app's. */}
              <input
                id={`${uid}-img`}
                className="file-input"
                type="file"
                accept={IMAGE_TYPES.join(',')}
                multiple
                aria-describedby={`${uid}-img-help`}
                onChange={(e) => {
                  const files = Array.from(e.target.files ?? []);
                  e.target.value = '';
                  void addFiles(files);
                }}
              />
              <label htmlFor={`${uid}-img`} className="btn btn-secondary file-label">
                {t('chat.chooseImages')}
              </label>
              {imageProblem && <p className="error-text">{imageProblem}</p>}
              <ul className="thumbs">
                {images.map((a, i) => (
                  <li key={i}>
                    <img src={a.url} alt={a.name} />
                    <button type="button" className="btn btn-secondary btn-small" onClick={() => setImages((cur) => cur.filter((_, j) => j !== i))} aria-label={t('chat.removeImage', { name: a.name })}>
                      {t('common.delete')}
                    </button>
                  </li>
                ))}
              </ul>
            </fieldset>
          )}
          <div className="row">
            <button type="submit" className="btn btn-primary" disabled={busy || tempBad || maxBad}>
              {busy ? t('chat.sending') : t('chat.send')}
            </button>
            {busy && (
              <button type="button" className="btn btn-secondary" onClick={() => abort.current?.abort()}>
                {t('chat.stop')}
              </button>
            )}
          </div>
        </form>
      )}
      {pendingModel !== null && (
        <ConfirmDialog
          title={t('chat.dropImagesTitle')}
          message={t('chat.dropImagesMessage', { count: images.length })}
          confirmLabel={t('chat.dropImagesConfirm')}
          onCancel={() => setPendingModel(null)}
          onConfirm={() => {
            setImages([]);
            setModel(pendingModel);
            setPendingModel(null);
          }}
        />
      )}
      <section className="card" aria-labelledby={`${uid}-resp`}>
        <h2 id={`${uid}-resp`}>{t('chat.response')}</h2>
        {error && <ErrorBox error={error} />}
        {error?.code === 'proxy_not_running' && <Link to="/">{t('chat.toDashboard')}</Link>}
        <div className="answer" aria-live="polite" data-testid="chat-answer">
          {answer || (busy ? t('chat.waiting') : t('chat.noAnswer'))}
        </div>
        {metrics && (
          <dl className="kv metrics">
            <div>
              <dt>{t('chat.httpStatus')}</dt>
              <dd>{metrics.status}</dd>
            </div>
            <div>
              <dt>{t('errors.requestId')}</dt>
              <dd className="mono">{metrics.requestId ?? '—'}</dd>
            </div>
            <div>
              <dt>{t('chat.ttft')}</dt>
              <dd>{metrics.ttftMs === null ? '—' : `${fmtNum(metrics.ttftMs)} ms`}</dd>
            </div>
            <div>
              <dt>{t('chat.tokensPerSec')}</dt>
              <dd>{metrics.tokensPerSec === null ? '—' : fmtNum(metrics.tokensPerSec, 1)}</dd>
            </div>
            <div>
              <dt>{t('chat.tokens')}</dt>
              <dd>{metrics.tokens}</dd>
            </div>
          </dl>
        )}
      </section>
    </section>
  );
}
