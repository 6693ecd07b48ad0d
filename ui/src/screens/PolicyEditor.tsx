import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiError } from '../api/client';
import type { FieldError, PolicyDoc } from '../api/types';
import { ConfirmDialog, ErrorBox } from '../components/common';
import { docToForm, formToDoc, groupFieldErrors, PROTECTIONS, type FormField, type PolicyForm, type Toggle } from '../state/policy';

function FieldErrors({ id, errors }: { id: string; errors: FieldError[] | undefined }) {
  if (!errors || errors.length === 0) return null;
  return (
    <ul id={id} className="field-errors">
      {errors.map((e, i) => (
        <li key={i}>
          <code>{e.path}</code>: {e.message}
        </li>
      ))}
    </ul>
  );
}

/** The security policy: a form for the common keys and an advanced JSON mode. Errors are the daemon's. */
export function PolicyEditor({ doc, onSave }: { doc: PolicyDoc; onSave: (doc: PolicyDoc) => Promise<unknown> }) {
  const { t } = useTranslation();
  const uid = useId();
  const [form, setForm] = useState<PolicyForm>(() => docToForm(doc));
  const [advanced, setAdvanced] = useState(false);
  const [askAdvanced, setAskAdvanced] = useState(false);
  const [json, setJson] = useState('');
  const [jsonError, setJsonError] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const fieldErrs = groupFieldErrors(error?.fields ?? []);
  const errs = (f: FormField) => fieldErrs[f];
  const desc = (f: FormField, help?: string) => [help, errs(f) ? `${uid}-${f}-err` : undefined].filter(Boolean).join(' ') || undefined;

  const save = async (next: PolicyDoc) => {
    setBusy(true);
    setError(null);
    try {
      await onSave(next);
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, 'network_error', String(e), null));
    } finally {
      setBusy(false);
    }
  };

  const submitForm = (e: React.FormEvent) => {
    e.preventDefault();
    void save(formToDoc(form, doc));
  };

  const submitJson = (e: React.FormEvent) => {
    e.preventDefault();
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      setJsonError(err instanceof Error ? err.message : String(err));
      return;
    }
    setJsonError(null);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      setJsonError(t('policy.jsonNotObject'));
      return;
    }
    void save(parsed as PolicyDoc);
  };

  const setProt = (p: (typeof PROTECTIONS)[number], v: Toggle) => setForm((f) => ({ ...f, protections: { ...f.protections, [p]: v } }));

  // "Saved" is shown by the caller: a save changes `updated_at`, which remounts this editor.
  const status = error && <ErrorBox error={error} />;

  if (advanced) {
    return (
      <form onSubmit={submitJson} noValidate>
        <p className="alert alert-warning">{t('policy.advancedWarning')}</p>
        <label htmlFor={`${uid}-json`}>{t('policy.json')}</label>
        <textarea
          id={`${uid}-json`}
          className="input mono"
          rows={16}
          value={json}
          onChange={(e) => setJson(e.target.value)}
          aria-invalid={Boolean(jsonError || error?.fields.length)}
          aria-describedby={error?.fields.length ? `${uid}-json-err` : undefined}
        />
        {jsonError && <p className="error-text">{t('policy.jsonInvalid', { message: jsonError })}</p>}
        <FieldErrors id={`${uid}-json-err`} errors={error?.fields} />
        <div className="row">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? t('common.saving') : t('common.save')}
          </button>
          <button type="button" className="btn btn-secondary" onClick={() => setAdvanced(false)}>
            {t('policy.backToForm')}
          </button>
        </div>
        {status}
      </form>
    );
  }

  return (
    <form onSubmit={submitForm} noValidate>
      <div className="field">
        <label htmlFor={`${uid}-allow`}>{t('policy.allowList')}</label>
        <textarea
          id={`${uid}-allow`}
          className="input mono"
          rows={4}
          placeholder="192.168.1.0/24"
          value={form.allowList}
          onChange={(e) => setForm({ ...form, allowList: e.target.value })}
          aria-invalid={Boolean(errs('allowList'))}
          aria-describedby={desc('allowList', `${uid}-allow-help`)}
        />
        <p id={`${uid}-allow-help`} className="muted small">
          {t('policy.allowListHelp')}
        </p>
        <FieldErrors id={`${uid}-allowList-err`} errors={errs('allowList')} />
      </div>
      <div className="field">
        <label htmlFor={`${uid}-cors`}>{t('policy.corsOrigins')}</label>
        <textarea
          id={`${uid}-cors`}
          className="input mono"
          rows={3}
          placeholder="https://app.example.com"
          value={form.corsOrigins}
          onChange={(e) => setForm({ ...form, corsOrigins: e.target.value })}
          aria-invalid={Boolean(errs('corsOrigins'))}
          aria-describedby={desc('corsOrigins', `${uid}-cors-help`)}
        />
        <p id={`${uid}-cors-help`} className="muted small">
          {t('policy.corsHelp')}
        </p>
        <FieldErrors id={`${uid}-corsOrigins-err`} errors={errs('corsOrigins')} />
      </div>
      <fieldset className="field">
        <legend>{t('policy.accessLimit')}</legend>
        <p className="muted small">{t('policy.accessLimitHelp')}</p>
        <div className="row">
          <div>
            <label htmlFor={`${uid}-rpm`}>{t('policy.rpm')}</label>
            <input
              id={`${uid}-rpm`}
              className="input"
              inputMode="numeric"
              value={form.rpm}
              onChange={(e) => setForm({ ...form, rpm: e.target.value })}
              aria-invalid={Boolean(errs('rpm'))}
              aria-describedby={desc('rpm')}
            />
            <FieldErrors id={`${uid}-rpm-err`} errors={errs('rpm')} />
          </div>
          <div>
            <label htmlFor={`${uid}-burst`}>{t('policy.burst')}</label>
            <input
              id={`${uid}-burst`}
              className="input"
              inputMode="numeric"
              value={form.burst}
              onChange={(e) => setForm({ ...form, burst: e.target.value })}
              aria-invalid={Boolean(errs('burst'))}
              aria-describedby={desc('burst')}
            />
            <FieldErrors id={`${uid}-burst-err`} errors={errs('burst')} />
          </div>
        </div>
      </fieldset>
      <fieldset className="field">
        <legend>{t('policy.protections')}</legend>
        <div className="prot-grid">
          {PROTECTIONS.map((p) => (
            <div key={p}>
              <label htmlFor={`${uid}-${p}`}>{t(`policy.protection.${p}`)}</label>
              <select
                id={`${uid}-${p}`}
                className="input"
                value={form.protections[p]}
                onChange={(e) => setProt(p, e.target.value as Toggle)}
                aria-invalid={Boolean(errs(p))}
                aria-describedby={desc(p)}
              >
                <option value="default">{t('policy.toggle.default')}</option>
                <option value="on">{t('policy.toggle.on')}</option>
                <option value="off">{t('policy.toggle.off')}</option>
              </select>
              <FieldErrors id={`${uid}-${p}-err`} errors={errs(p)} />
            </div>
          ))}
        </div>
      </fieldset>
      <FieldErrors id={`${uid}-other-err`} errors={errs('other')} />
      <div className="row">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? t('common.saving') : t('common.save')}
        </button>
        <button type="button" className="btn btn-secondary" onClick={() => setAskAdvanced(true)}>
          {t('policy.advanced')}
        </button>
      </div>
      {status}
      {askAdvanced && (
        <ConfirmDialog
          title={t('policy.advancedTitle')}
          message={t('policy.advancedWarning')}
          confirmLabel={t('policy.advancedConfirm')}
          onCancel={() => setAskAdvanced(false)}
          onConfirm={() => {
            setJson(JSON.stringify(formToDoc(form, doc), null, 2));
            setAskAdvanced(false);
            setAdvanced(true);
          }}
        />
      )}
    </form>
  );
}
