import { useId, useState } from 'react';
import { Trans, useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { errorCodeKey } from '../api/errors';
import { useAction, useResource } from '../api/hooks';
import { ConfirmDialog, DATA, Empty, ErrorBox, Loading } from '../components/common';
import { fmtTime } from '../state/format';
import { charCount, EMPTY_PROMPT, firstLine, promptForm, promptProblems, promptRequest, sortPrompts, type PromptForm } from '../state/profiles';
import type { PreviewView, PromptScopeKind, PromptView } from '../api/types';

type Field = 'target' | 'text';
const SCOPES: PromptScopeKind[] = ['default', 'model', 'key'];

export default function PromptTemplates() {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(() => api.prompts(), []);
  const models = useResource(() => api.models(), []);
  const keys = useResource(() => api.keys(), [], ['keys']);
  const action = useAction();
  const previewAction = useAction();
  const [form, setForm] = useState<PromptForm>(EMPTY_PROMPT);
  const [editing, setEditing] = useState(false);
  const [checked, setChecked] = useState(false);
  const [sample, setSample] = useState(() => t('promptTemplates.sampleDefault'));
  const [preview, setPreview] = useState<PreviewView | null>(null);
  const [deleting, setDeleting] = useState<PromptView | null>(null);
  const [saved, setSaved] = useState(false);

  const max = res.data?.max_chars ?? 16384;
  const problems = checked ? promptProblems(form, max) : {};
  const serverFor = (f: Field) => (action.error?.fields ?? []).filter((e) => e.path === f);
  const set = (patch: Partial<PromptForm>) => {
    setForm((f) => ({ ...f, ...patch }));
    setPreview(null);
  };
  const fid = (f: Field) => `${uid}-${f}`;
  const aria = (f: Field) => {
    const bad = Boolean(problems[f]) || serverFor(f).length > 0;
    return { 'aria-invalid': bad, 'aria-describedby': bad ? `${fid(f)}-err` : undefined };
  };
  const errors = (f: Field) => {
    const p = problems[f];
    const s = serverFor(f);
    if (!p && s.length === 0) return null;
    return (
      <div id={`${fid(f)}-err`}>
        {p && <p className="error-text small">{t(`promptTemplates.problem.${p}`, { max })}</p>}
        {s.map((e) => (
          <p key={e.message} className="error-text small">
            {t(`errors.${errorCodeKey(action.error?.code ?? '')}.message`)} <code>{e.message}</code>
          </p>
        ))}
      </div>
    );
  };
  const reset = () => {
    setForm(EMPTY_PROMPT);
    setEditing(false);
    setChecked(false);
    setPreview(null);
    action.clear();
  };

  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setChecked(true);
    setSaved(false);
    if (Object.keys(promptProblems(form, max)).length > 0) return;
    if ((await action.run(() => api.setPrompt(promptRequest(form)))) !== undefined) {
      reset();
      setSaved(true);
      res.reload();
    }
  };
  const showPreview = async () => {
    const p = await previewAction.run(() => api.previewPrompt({ text: form.text, message: sample }));
    if (p !== undefined) setPreview(p);
  };
  const remove = async () => {
    if (!deleting) return;
    const target = deleting;
    // A 204 has no body: the action's result is `true` once it succeeded.
    if ((await action.run(async () => {
      await api.deletePrompt(target.api_id);
      return true;
    })) === true) {
      setDeleting(null);
      res.reload();
    }
  };
  const appliesTo = (p: PromptView) => (p.target ? (p.key_label ? `${p.key_label} (${p.target})` : p.target) : '—');
  const rowName = (p: PromptView) => `${t(`promptTemplates.scopes.${p.scope}`)} ${appliesTo(p)}`;
  const activeKeys = (keys.data?.keys ?? []).filter((k) => !k.revoked_at);

  return (
    <section>
      <h1>{t('promptTemplates.title')}</h1>
      <p className="muted">{t('promptTemplates.help')}</p>
      <p className="alert alert-info">{t('promptTemplates.precedence')}</p>

      <form className="card" onSubmit={(e) => void save(e)} noValidate aria-labelledby={`${uid}-form-title`}>
        <h2 id={`${uid}-form-title`}>{editing ? t('promptTemplates.editTitle') : t('promptTemplates.createTitle')}</h2>
        <div className="field">
          <label htmlFor={`${uid}-scope`}>{t('promptTemplates.scope')}</label>
          <select id={`${uid}-scope`} className="input" value={form.scope} disabled={editing} onChange={(e) => set({ scope: e.target.value as PromptScopeKind, target: '' })}>
            {SCOPES.map((s) => (
              <option key={s} value={s}>
                {t(`promptTemplates.scopes.${s}`)}
              </option>
            ))}
          </select>
        </div>
        {form.scope === 'model' && (
          <div className="field">
            <label htmlFor={fid('target')}>{t('promptTemplates.model')}</label>
            <input id={fid('target')} className="input mono" list={`${uid}-models`} placeholder="flm://engine/model" value={form.target} disabled={editing} onChange={(e) => set({ target: e.target.value })} {...aria('target')} />
            <datalist id={`${uid}-models`}>
              {(models.data?.models ?? []).map((m) => (
                <option key={m.id} value={m.id} />
              ))}
            </datalist>
            <p className="muted small">{t('promptTemplates.modelHint')}</p>
            {errors('target')}
          </div>
        )}
        {form.scope === 'key' && (
          <div className="field">
            <label htmlFor={fid('target')}>{t('promptTemplates.key')}</label>
            <select id={fid('target')} className="input" value={form.target} disabled={editing} onChange={(e) => set({ target: e.target.value })} {...aria('target')}>
              <option value="">{t('promptTemplates.chooseKey')}</option>
              {activeKeys.map((k) => (
                <option key={k.id} value={k.id} translate="no">
                  {k.label} ({k.id})
                </option>
              ))}
            </select>
            {errors('target')}
          </div>
        )}
        <div className="field">
          <label htmlFor={fid('text')}>{t('promptTemplates.text')}</label>
          <textarea id={fid('text')} className="input" rows={6} value={form.text} onChange={(e) => set({ text: e.target.value })} {...aria('text')} />
          <p className="muted small" aria-live="polite">
            {t('promptTemplates.count', { count: charCount(form.text), max })}
          </p>
          {errors('text')}
        </div>
        <div className="field">
          <label htmlFor={`${uid}-sample`}>{t('promptTemplates.sample')}</label>
          <input id={`${uid}-sample`} className="input" value={sample} onChange={(e) => setSample(e.target.value)} />
        </div>
        {action.error && !deleting && (action.error.fields ?? []).length === 0 && <ErrorBox error={action.error} />}
        {previewAction.error && <ErrorBox error={previewAction.error} />}
        {saved && (
          <p className="alert alert-success" role="status">
            {t('promptTemplates.saved')}
          </p>
        )}
        <div className="row">
          <button type="submit" className="btn btn-primary" disabled={action.busy}>
            {action.busy ? t('common.working') : t('common.save')}
          </button>
          <button type="button" className="btn btn-secondary" onClick={() => void showPreview()} disabled={previewAction.busy}>
            {t('promptTemplates.preview')}
          </button>
          {editing && (
            <button type="button" className="btn btn-secondary" onClick={reset}>
              {t('common.cancel')}
            </button>
          )}
        </div>
        {preview && (
          <div className="field" aria-live="polite">
            <h3>{t('promptTemplates.previewTitle')}</h3>
            <ol data-testid="prompt-preview">
              {preview.messages.map((m, i) => (
                <li key={i}>
                  <strong>{t(`promptTemplates.roles.${m.role === 'system' ? 'system' : 'user'}`)}</strong>
                  <pre className="code-block">{m.content}</pre>
                </li>
              ))}
            </ol>
          </div>
        )}
      </form>

      <div className="card">
        {res.loading && !res.data && <Loading />}
        {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
        {res.data &&
          (res.data.prompts.length === 0 ? (
            <Empty>{t('promptTemplates.empty')}</Empty>
          ) : (
            <div className="table-wrap">
              <p className="muted small">{t('common.total', { count: res.data.prompts.length })}</p>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t('promptTemplates.scope')}</th>
                    <th scope="col">{t('promptTemplates.appliesTo')}</th>
                    <th scope="col">{t('promptTemplates.text')}</th>
                    <th scope="col">{t('promptTemplates.chars')}</th>
                    <th scope="col">{t('promptTemplates.updated')}</th>
                    <th scope="col">{t('common.actions')}</th>
                  </tr>
                </thead>
                <tbody>
                  {sortPrompts(res.data.prompts).map((p) => (
                    <tr key={p.api_id}>
                      <td>{t(`promptTemplates.scopes.${p.scope}`)}</td>
                      <td className="mono">{appliesTo(p)}</td>
                      <td className="mono small">{firstLine(p.text)}</td>
                      <td>{p.chars}</td>
                      <td>{fmtTime(p.updated_at)}</td>
                      <td className="nowrap">
                        <button
                          type="button"
                          className="btn btn-secondary btn-small"
                          onClick={() => {
                            setForm(promptForm(p));
                            setEditing(true);
                            setChecked(false);
                            setSaved(false);
                            setPreview(null);
                            action.clear();
                          }}
                          aria-label={`${t('common.edit')}: ${rowName(p)}`}
                        >
                          {t('common.edit')}
                        </button>{' '}
                        <button type="button" className="btn btn-danger btn-small" onClick={() => setDeleting(p)} aria-label={`${t('common.delete')}: ${rowName(p)}`}>
                          {t('common.delete')}
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ))}
      </div>
      {deleting && (
        <ConfirmDialog
          title={t('promptTemplates.deleteTitle')}
          message={<Trans i18nKey="promptTemplates.deleteMessage" values={{ id: appliesTo(deleting), scope: t(`promptTemplates.scopes.${deleting.scope}`) }} components={DATA} />}
          confirmLabel={t('common.delete')}
          danger
          busy={action.busy}
          error={action.error}
          onConfirm={() => void remove()}
          onCancel={() => {
            action.clear();
            setDeleting(null);
          }}
        />
      )}
    </section>
  );
}
