import { useEffect, useId, useState } from 'react';
import { useLocation } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import type { TFunction } from 'i18next';
import { api, ApiError } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import { asPolicyDoc, type CreateKeyRequest, type KeyView, type RouteClass, type Setting } from '../api/types';
import { ConfirmDialog, Empty, ErrorBox, Loading, SecretDialog } from '../components/common';
import { fmtTime } from '../state/format';
import { PolicyEditor } from './PolicyEditor';
import { capabilityList, codeParts, settingHelp } from '../state/values';

function Models() {
  const { t } = useTranslation();
  const res = useResource(() => api.models(), [], ['engine']);
  const action = useAction();
  const detect = async () => {
    if ((await action.run(() => api.detectEngines())) !== undefined) res.reload();
  };
  return (
    <section className="card" id="models" aria-labelledby="models-h">
      <div className="card-head">
        <h2 id="models-h">{t('apiSetup.models.title')}</h2>
        <button type="button" className="btn btn-secondary" onClick={() => void detect()} disabled={action.busy}>
          {action.busy ? t('dashboard.engines.detecting') : t('dashboard.engines.detect')}
        </button>
      </div>
      {action.error && <ErrorBox error={action.error} />}
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.models.length === 0 ? (
          <Empty>{t('apiSetup.models.empty')}</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('apiSetup.models.id')}</th>
                  <th scope="col">{t('apiSetup.models.engine')}</th>
                  <th scope="col">{t('dashboard.engines.capabilities')}</th>
                </tr>
              </thead>
              <tbody>
                {res.data.models.map((m) => (
                  <tr key={m.id}>
                    <td className="mono">{m.id}</td>
                    <td>{m.engine_id}</td>
                    <td>{m.capabilities.length ? capabilityList(t, m.capabilities) : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
    </section>
  );
}

type KeyConfirm = { kind: 'revoke' | 'rotate'; key: KeyView } | null;

/** Every route class a key can be limited to (the daemon's `RouteClass`). */
const ROUTE_CLASSES: RouteClass[] = ['chat', 'completions', 'embeddings', 'models', 'responses', 'audio', 'images', 'passthrough', 'metrics'];
/** Lifetimes offered for a new key (`expires_in`); '' = never expires. */
const LIFETIMES = ['', '1h', '1d', '7d', '30d', '90d', '365d'] as const;

/** Model patterns typed as a comma- or newline-separated list. */
function patternList(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function budgetText(t: TFunction, k: KeyView): string {
  const parts: string[] = [];
  if (k.tpm != null) parts.push(t('keys.perMinute', { n: k.tpm.toLocaleString() }));
  if (k.monthly_tokens != null) parts.push(t('keys.perMonth', { n: k.monthly_tokens.toLocaleString() }));
  return parts.length ? parts.join(', ') : t('keys.noLimit');
}

function keyState(t: TFunction, k: KeyView): string {
  if (k.revoked_at) return t('keys.revokedAt', { date: fmtTime(k.revoked_at) });
  if (k.expired) return t('keys.expired');
  return t('keys.active');
}

export function Keys() {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(() => api.keys(), [], ['keys']);
  const action = useAction();
  const [label, setLabel] = useState('');
  const [models, setModels] = useState('');
  const [routes, setRoutes] = useState<RouteClass[]>([]);
  const [lifetime, setLifetime] = useState<string>('');
  const [tpm, setTpm] = useState('');
  const [monthly, setMonthly] = useState('');
  const [secret, setSecret] = useState<{ secret: string; label: string } | null>(null);
  const [confirm, setConfirm] = useState<KeyConfirm>(null);

  const toggleRoute = (c: RouteClass, on: boolean) => setRoutes((rs) => (on ? [...rs, c] : rs.filter((r) => r !== c)));
  const create = async (e: React.FormEvent) => {
    e.preventDefault();
    const limits: Omit<CreateKeyRequest, 'label'> = {};
    const patterns = patternList(models);
    if (patterns.length) limits.models = patterns;
    if (routes.length) limits.routes = ROUTE_CLASSES.filter((c) => routes.includes(c));
    if (lifetime) limits.expires_in = lifetime;
    if (tpm.trim()) limits.tpm = Number(tpm);
    if (monthly.trim()) limits.monthly_tokens = Number(monthly);
    const r = await action.run(() => api.createKey(label.trim(), limits));
    if (r) {
      setLabel('');
      setModels('');
      setRoutes([]);
      setLifetime('');
      setTpm('');
      setMonthly('');
      setSecret({ secret: r.secret, label: r.key.label });
      res.reload();
    }
  };
  const doConfirm = async () => {
    if (!confirm) return;
    const k = confirm.key;
    if (confirm.kind === 'revoke') {
      if ((await action.run(() => api.revokeKey(k.id))) !== undefined) {
        setConfirm(null);
        res.reload();
      }
    } else {
      const r = await action.run(() => api.rotateKey(k.id));
      if (r) {
        setConfirm(null);
        setSecret({ secret: r.secret, label: r.key.label });
        res.reload();
      }
    }
  };

  return (
    <section className="card" id="keys" aria-labelledby="keys-h">
      <h2 id="keys-h">{t('keys.title')}</h2>
      <p className="muted">{t('keys.help')}</p>
      <form className="row" onSubmit={(e) => void create(e)}>
        <div className="grow">
          <label htmlFor={`${uid}-label`}>{t('keys.label')}</label>
          <input id={`${uid}-label`} className="input" value={label} onChange={(e) => setLabel(e.target.value)} placeholder={t('keys.labelPlaceholder')} />
        </div>
        <div>
          <label htmlFor={`${uid}-expires`}>{t('keys.expiresIn')}</label>
          <select id={`${uid}-expires`} className="input" value={lifetime} onChange={(e) => setLifetime(e.target.value)}>
            {LIFETIMES.map((l) => (
              <option key={l} value={l}>
                {t(`keys.lifetime.${l === '' ? 'never' : l}`)}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" className="btn btn-primary align-end" disabled={action.busy || label.trim() === ''}>
          {t('keys.create')}
        </button>
      </form>
      <details className="field">
        <summary>{t('keys.limitsTitle')}</summary>
        <p className="muted small">{t('keys.limitsHelp')}</p>
        <div className="field">
          <label htmlFor={`${uid}-models`}>{t('keys.models')}</label>
          <input
            id={`${uid}-models`}
            className="input mono"
            value={models}
            onChange={(e) => setModels(e.target.value)}
            placeholder="flm://ollama-default/*, *llama*"
            aria-describedby={`${uid}-models-help`}
          />
          <p id={`${uid}-models-help`} className="muted small">
            {t('keys.modelsHelp')}
          </p>
        </div>
        <div className="filters field">
          <div>
            <label htmlFor={`${uid}-tpm`}>{t('keys.tpm')}</label>
            <input id={`${uid}-tpm`} className="input" type="number" min={1} step={1} inputMode="numeric" value={tpm} onChange={(e) => setTpm(e.target.value)} placeholder={t('keys.noLimit')} />
          </div>
          <div>
            <label htmlFor={`${uid}-monthly`}>{t('keys.monthlyTokens')}</label>
            <input id={`${uid}-monthly`} className="input" type="number" min={1} step={1} inputMode="numeric" value={monthly} onChange={(e) => setMonthly(e.target.value)} placeholder={t('keys.noLimit')} />
          </div>
        </div>
        <fieldset>
          <legend>{t('keys.routes')}</legend>
          <p className="muted small">{t('keys.routesHelp')}</p>
          <div className="filters">
            {ROUTE_CLASSES.map((c) => (
              <div className="checkbox" key={c}>
                <input id={`${uid}-route-${c}`} type="checkbox" checked={routes.includes(c)} onChange={(e) => toggleRoute(c, e.target.checked)} />
                <label htmlFor={`${uid}-route-${c}`}>{t(`keys.routeClass.${c}`)}</label>
              </div>
            ))}
          </div>
        </fieldset>
      </details>
      {action.error && !confirm && <ErrorBox error={action.error} />}
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.keys.length === 0 ? (
          <Empty>{t('keys.empty')}</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('keys.label')}</th>
                  <th scope="col">{t('keys.id')}</th>
                  <th scope="col">{t('keys.created')}</th>
                  <th scope="col">{t('keys.lastUsed')}</th>
                  <th scope="col">{t('keys.models')}</th>
                  <th scope="col">{t('keys.routes')}</th>
                  <th scope="col">{t('keys.expires')}</th>
                  <th scope="col">{t('keys.budget')}</th>
                  <th scope="col">{t('keys.state')}</th>
                  <th scope="col">{t('common.actions')}</th>
                </tr>
              </thead>
              <tbody>
                {res.data.keys.map((k) => (
                  <tr key={k.id}>
                    <td translate="no">{k.label}</td>
                    <td className="mono small">{k.id}</td>
                    <td>{fmtTime(k.created_at)}</td>
                    <td>{k.last_used_at ? fmtTime(k.last_used_at) : t('keys.neverUsed')}</td>
                    <td className="mono small">{k.models?.length ? k.models.join(', ') : t('keys.allModels')}</td>
                    <td>{k.routes?.length ? k.routes.map((c) => t(`keys.routeClass.${c}`)).join(', ') : t('keys.allRoutes')}</td>
                    <td>{k.expires_at ? fmtTime(k.expires_at) : t('keys.neverExpires')}</td>
                    <td>{budgetText(t, k)}</td>
                    <td>{keyState(t, k)}</td>
                    <td>
                      {!k.revoked_at && (
                        <div className="row">
                          <button type="button" className="btn btn-secondary btn-small" onClick={() => setConfirm({ kind: 'rotate', key: k })} aria-label={`${t('keys.rotate')}: ${k.label}`}>
                            {t('keys.rotate')}
                          </button>
                          <button type="button" className="btn btn-danger btn-small" onClick={() => setConfirm({ kind: 'revoke', key: k })} aria-label={`${t('keys.revoke')}: ${k.label}`}>
                            {t('keys.revoke')}
                          </button>
                        </div>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      {confirm && (
        <ConfirmDialog
          title={confirm.kind === 'revoke' ? t('confirmDialog.revokeApiKey.title') : t('confirmDialog.rotateApiKey.title')}
          message={
            confirm.kind === 'revoke'
              ? t('confirmDialog.revokeApiKey.message', { label: confirm.key.label })
              : t('confirmDialog.rotateApiKey.message', { label: confirm.key.label })
          }
          confirmLabel={confirm.kind === 'revoke' ? t('confirmDialog.revokeApiKey.confirm') : t('confirmDialog.rotateApiKey.confirm')}
          danger
          busy={action.busy}
          error={action.error}
          onConfirm={() => void doConfirm()}
          onCancel={() => {
            action.clear();
            setConfirm(null);
          }}
        />
      )}
      {secret && <SecretDialog title={t('keys.createdTitle')} secret={secret.secret} label={secret.label} onClose={() => setSecret(null)} />}
    </section>
  );
}

export function Policy() {
  const { t } = useTranslation();
  const res = useResource(() => api.policy(), [], ['policy']);
  // Kept here, not in the editor: the reload after a save gives a new `updated_at`,
  // which remounts the editor (fresh form state from the stored policy).
  const [saved, setSaved] = useState(false);
  return (
    <section className="card" id="policy" aria-labelledby="policy-h">
      <h2 id="policy-h">{t('policy.title')}</h2>
      <p className="muted small">
        {t('policy.updatedAt')}: {fmtTime(res.data?.updated_at)}
      </p>
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data?.problem && <p className="alert alert-warning">{t('policy.problem', { problem: res.data.problem })}</p>}
      {res.data && (
        <PolicyEditor
          key={res.data.updated_at ?? 'none'}
          doc={asPolicyDoc(res.data.policy) ?? {}}
          onSave={async (doc) => {
            setSaved(false);
            await api.setPolicy(doc);
            setSaved(true);
            res.reload();
          }}
        />
      )}
      {saved && (
        <p className="ok-text" role="status">
          {t('policy.saved')}
        </p>
      )}
    </section>
  );
}

function ConfigRow({ s, onSaved }: { s: Setting; onSaved: () => void }) {
  const { t } = useTranslation();
  const uid = useId();
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(s.value);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.setConfig(s.key, value);
      setEditing(false);
      onSaved();
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'network_error', String(err), null));
    } finally {
      setBusy(false);
    }
  };
  const choices = s.kind === 'bool' ? ['true', 'false'] : s.choices;
  return (
    <tr>
      <td className="mono">{s.key}</td>
      <td>
        {editing ? (
          <form className="row" onSubmit={(e) => void save(e)}>
            <label htmlFor={`${uid}-v`} className="sr-only">
              {s.key}
            </label>
            {choices ? (
              <select id={`${uid}-v`} className="input" value={value} onChange={(e) => setValue(e.target.value)}>
                {choices.map((c) => (
                  <option key={c} value={c}>
                    {c}
                  </option>
                ))}
              </select>
            ) : (
              <input id={`${uid}-v`} className="input mono" value={value} onChange={(e) => setValue(e.target.value)} />
            )}
            <button type="submit" className="btn btn-primary btn-small" disabled={busy}>
              {t('common.save')}
            </button>
            <button type="button" className="btn btn-secondary btn-small" onClick={() => { setEditing(false); setValue(s.value); setError(null); }}>
              {t('common.cancel')}
            </button>
          </form>
        ) : (
          <span className="mono">{s.value === '' ? '—' : s.value}</span>
        )}
        {error && (
          <>
            {error.fields.map((f) => (
              <p key={f.path} className="error-text small">
                {f.message}
              </p>
            ))}
            <ErrorBox error={error} />
          </>
        )}
      </td>
      <td className="mono small">{s.default === '' ? '—' : s.default}</td>
      <td className="small">
        {codeParts(settingHelp(t, s.key, s.help)).map((p, i) => (p.code ? <code key={i}>{p.text}</code> : p.text))}
      </td>
      <td>
        {!editing && (
          <button type="button" className="btn btn-secondary btn-small" onClick={() => setEditing(true)} aria-label={`${t('common.edit')}: ${s.key}`}>
            {t('common.edit')}
          </button>
        )}
      </td>
    </tr>
  );
}

function Config() {
  const { t } = useTranslation();
  const res = useResource(() => api.config(), [], ['config']);
  return (
    <section className="card" id="config" aria-labelledby="config-h">
      <h2 id="config-h">{t('config.title')}</h2>
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.settings.length === 0 ? (
          <Empty>{t('config.empty')}</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('config.key')}</th>
                  <th scope="col">{t('config.value')}</th>
                  <th scope="col">{t('config.default')}</th>
                  <th scope="col">{t('config.help')}</th>
                  <th scope="col">{t('common.actions')}</th>
                </tr>
              </thead>
              <tbody>
                {res.data.settings.map((s) => (
                  <ConfigRow key={`${s.key}=${s.value}`} s={s} onSaved={res.reload} />
                ))}
              </tbody>
            </table>
          </div>
        ))}
    </section>
  );
}

export default function ApiSetup() {
  const { t } = useTranslation();
  const { hash } = useLocation();
  useEffect(() => {
    if (hash) document.getElementById(hash.slice(1))?.scrollIntoView();
  }, [hash]);
  return (
    <section>
      <h1>{t('apiSetup.title')}</h1>
      <nav className="tabs" aria-label={t('apiSetup.sections')}>
        <a href="#models">{t('apiSetup.models.title')}</a>
        <a href="#keys">{t('keys.title')}</a>
        <a href="#policy">{t('policy.title')}</a>
        <a href="#config">{t('config.title')}</a>
      </nav>
      <div className="stack">
        <Models />
        <Keys />
        <Policy />
        <Config />
      </div>
    </section>
  );
}
