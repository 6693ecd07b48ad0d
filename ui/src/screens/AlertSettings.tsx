import { useId, useState } from 'react';
import { Trans, useTranslation } from 'react-i18next';
import { Link } from 'react-router-dom';
import {
  ALERT_EVENT_TYPES, ALERT_SEVERITIES, draftsFromSetting, eventTypeKey, groupRuleErrors, newDraft, severityKey,
  settingFromDrafts, type RuleDraft, type RuleField,
} from '../api/alerts';
import { api, ApiError } from '../api/client';
import { useResource } from '../api/hooks';
import type { Setting } from '../api/types';
import { ConfirmDialog, DATA, Empty, ErrorBox, Loading } from '../components/common';

const KEY = 'alert_rules';

type FieldErrs = Partial<Record<RuleField, string[]>>;

function Errs({ id, list }: { id: string; list: string[] | undefined }) {
  if (!list || list.length === 0) return null;
  return (
    <ul id={id} className="field-errors">
      {list.map((m, i) => (
        <li key={i}>{m}</li>
      ))}
    </ul>
  );
}

function RuleEditor({ draft, index, errors, onChange, onDelete }: {
  draft: RuleDraft;
  index: number;
  errors: FieldErrs;
  onChange: (d: RuleDraft) => void;
  onDelete: () => void;
}) {
  const { t } = useTranslation();
  const uid = useId();
  const fid = (f: RuleField) => `${uid}-${f}`;
  const eid = (f: RuleField) => `${uid}-${f}-err`;
  const aria = (f: RuleField) => (errors[f]?.length ? { 'aria-invalid': true, 'aria-describedby': eid(f) } : {});
  const set = <K extends keyof RuleDraft>(k: K, v: RuleDraft[K]) => onChange({ ...draft, [k]: v });
  const text = (f: 'id' | 'threshold' | 'windowSecs' | 'cooldownSecs', inputMode?: 'numeric') => (
    <div>
      <label htmlFor={fid(f)}>{t(`alertSettings.fields.${f}`)}</label>
      <input id={fid(f)} className="input" inputMode={inputMode} value={draft[f]} onChange={(e) => set(f, e.target.value)} {...aria(f)} />
      <Errs id={eid(f)} list={errors[f]} />
    </div>
  );
  const check = (f: 'enabled' | 'notifyUI' | 'notifyLog') => (
    <div className="checkbox">
      <input id={fid(f)} type="checkbox" checked={draft[f]} onChange={(e) => set(f, e.target.checked)} {...aria(f)} />
      <label htmlFor={fid(f)}>{t(`alertSettings.fields.${f}`)}</label>
      <Errs id={eid(f)} list={errors[f]} />
    </div>
  );
  return (
    <fieldset className="card">
      <legend>
        <Trans i18nKey="alertSettings.ruleTitle" values={{ index: index + 1, id: draft.id || '—' }} components={DATA} />
      </legend>
      <div className="filters">
        {text('id')}
        <div>
          <label htmlFor={fid('eventType')}>{t('alertSettings.fields.eventType')}</label>
          <select id={fid('eventType')} className="input" value={draft.eventType} onChange={(e) => set('eventType', e.target.value)} {...aria('eventType')}>
            {ALERT_EVENT_TYPES.map((v) => (
              <option key={v} value={v}>
                {t(eventTypeKey(v))}
              </option>
            ))}
          </select>
          <Errs id={eid('eventType')} list={errors.eventType} />
        </div>
        <div>
          <label htmlFor={fid('severity')}>{t('alertSettings.fields.severity')}</label>
          <select id={fid('severity')} className="input" value={draft.severity} onChange={(e) => set('severity', e.target.value)} {...aria('severity')}>
            {ALERT_SEVERITIES.map((v) => (
              <option key={v} value={v}>
                {t(severityKey(v))}
              </option>
            ))}
          </select>
          <Errs id={eid('severity')} list={errors.severity} />
        </div>
        {text('threshold', 'numeric')}
        {text('windowSecs', 'numeric')}
        {text('cooldownSecs', 'numeric')}
      </div>
      <p className="muted small">{t('alertSettings.ruleHelp')}</p>
      <div className="row">
        {check('enabled')}
        {check('notifyUI')}
        {check('notifyLog')}
        <button type="button" className="btn btn-secondary btn-small" onClick={onDelete}>
          <Trans i18nKey="alertSettings.deleteRule" values={{ id: draft.id || index + 1 }} components={DATA} />
        </button>
      </div>
    </fieldset>
  );
}

function RulesForm({ setting, onSaved }: { setting: Setting; onSaved: () => void }) {
  const { t } = useTranslation();
  const [drafts, setDrafts] = useState<RuleDraft[]>(() => draftsFromSetting(setting.value || setting.default));
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [deleting, setDeleting] = useState<number | null>(null);
  const grouped = groupRuleErrors(error?.fields ?? []);
  const isDefault = (setting.value || setting.default) === setting.default;

  const edit = (fn: (d: RuleDraft[]) => RuleDraft[]) => {
    setDrafts(fn);
    setSaved(false);
  };

  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await api.setConfig(KEY, settingFromDrafts(drafts));
      setSaved(true);
      onSaved();
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'network_error', String(err), null));
    } finally {
      setBusy(false);
    }
  };

  const target = deleting === null ? undefined : drafts.find((d) => d.key === deleting);
  return (
    <form onSubmit={(e) => void save(e)} noValidate>
      {isDefault && <p className="alert alert-info">{t('alertSettings.defaultsShown')}</p>}
      {drafts.length === 0 && <Empty>{t('alertSettings.empty')}</Empty>}
      <div className="stack">
        {drafts.map((d, i) => (
          <RuleEditor
            key={d.key}
            draft={d}
            index={i}
            errors={grouped.byRule.get(i) ?? {}}
            onChange={(next) => edit((all) => all.map((x) => (x.key === d.key ? next : x)))}
            onDelete={() => setDeleting(d.key)}
          />
        ))}
      </div>
      {grouped.general.length > 0 && (
        <ul className="field-errors">
          {grouped.general.map((f, i) => (
            <li key={i}>
              <code>{f.path}</code>: {f.message}
            </li>
          ))}
        </ul>
      )}
      <div className="row">
        <button type="button" className="btn btn-secondary" onClick={() => edit((all) => [...all, newDraft(all)])}>
          {t('alertSettings.addRule')}
        </button>
        <button type="button" className="btn btn-secondary" onClick={() => edit(() => draftsFromSetting(setting.default))}>
          {t('alertSettings.useDefaults')}
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? t('common.saving') : t('alertSettings.save')}
        </button>
      </div>
      {saved && (
        <p className="ok-text" role="status">
          {t('alertSettings.saved')}
        </p>
      )}
      {error && <ErrorBox error={error} />}
      {target && (
        <ConfirmDialog
          title={t('alertSettings.confirmDeleteTitle')}
          message={t('alertSettings.confirmDeleteMessage', { id: target.id || '—' })}
          confirmLabel={t('common.delete')}
          danger
          onConfirm={() => {
            edit((all) => all.filter((x) => x.key !== target.key));
            setDeleting(null);
          }}
          onCancel={() => setDeleting(null)}
        />
      )}
    </form>
  );
}

/** Alert Settings (spec 60-ui §3.10): the rules of `alert_rules`, edited as a form. */
export default function AlertSettings() {
  const { t } = useTranslation();
  const config = useResource(() => api.config(), [], []);
  const setting = config.data?.settings.find((s) => s.key === KEY);
  return (
    <section>
      <h1>{t('alertSettings.title')}</h1>
      <p>{t('alertSettings.intro')}</p>
      <p>
        <Link to="/settings">{t('alertSettings.backToSettings')}</Link>
      </p>
      {config.loading && !config.data && <Loading />}
      {config.error && <ErrorBox error={config.error} onRetry={config.reload} />}
      {config.data && (setting ? <RulesForm setting={setting} onSaved={config.reload} /> : <p className="muted">{t('alertSettings.unsupported')}</p>)}
    </section>
  );
}
