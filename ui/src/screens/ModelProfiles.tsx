import { useId, useState } from 'react';
import { Trans, useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { errorCodeKey } from '../api/errors';
import { useAction, useResource } from '../api/hooks';
import { ConfirmDialog, DATA, Empty, ErrorBox, Loading } from '../components/common';
import { fmtTime } from '../state/format';
import {
  EMPTY_PROFILE, exampleRequest, filterProfiles, paramsSummary, profileForm, profileProblems, profileRequest,
  type ProfileForm,
} from '../state/profiles';
import type { ProfileView } from '../api/types';

type Field = 'label' | 'model' | 'parameters';

export default function ModelProfiles() {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(() => api.profiles(), []);
  const models = useResource(() => api.models(), []);
  const action = useAction();
  const [form, setForm] = useState<ProfileForm>(EMPTY_PROFILE);
  const [checked, setChecked] = useState(false);
  const [query, setQuery] = useState('');
  const [deleting, setDeleting] = useState<ProfileView | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  const problems = checked ? profileProblems(form) : {};
  const serverFields = action.error?.fields ?? [];
  const serverFor = (f: Field) => serverFields.filter((e) => e.path === f);
  const set = (patch: Partial<ProfileForm>) => setForm((f) => ({ ...f, ...patch }));
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
        {p && <p className="error-text small">{t(`modelProfiles.problem.${p}`)}</p>}
        {s.map((e) => (
          <p key={e.message} className="error-text small">
            {t(`errors.${errorCodeKey(action.error?.code ?? '')}.message`)} <code>{e.message}</code>
          </p>
        ))}
      </div>
    );
  };

  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setChecked(true);
    setSaved(null);
    if (Object.keys(profileProblems(form)).length > 0) return;
    const p = await action.run(() => api.saveProfile(profileRequest(form)));
    if (p !== undefined) {
      setSaved(p.model_id);
      setForm(EMPTY_PROFILE);
      setChecked(false);
      res.reload();
    }
  };
  const remove = async () => {
    if (!deleting) return;
    const target = deleting;
    // A 204 has no body: the action's result is `true` once it succeeded.
    if ((await action.run(async () => {
      await api.deleteProfile(target.id);
      return true;
    })) === true) {
      setDeleting(null);
      res.reload();
    }
  };
  const list = res.data ? filterProfiles(res.data.profiles, query) : [];

  return (
    <section>
      <h1>{t('modelProfiles.title')}</h1>
      <p className="muted">{t('modelProfiles.help')}</p>
      <p className="muted small">
        {t('modelProfiles.idForm')} <code>profile/&lt;label&gt;</code>
      </p>

      <form className="card" onSubmit={(e) => void save(e)} noValidate aria-labelledby={`${uid}-form-title`}>
        <h2 id={`${uid}-form-title`}>{form.id ? t('modelProfiles.editTitle') : t('modelProfiles.createTitle')}</h2>
        <div className="field">
          <label htmlFor={fid('label')}>{t('modelProfiles.label')}</label>
          <input id={fid('label')} className="input mono" value={form.label} onChange={(e) => set({ label: e.target.value })} {...aria('label')} />
          <p className="muted small">{t('modelProfiles.labelHint')}</p>
          {errors('label')}
        </div>
        <div className="field">
          <label htmlFor={fid('model')}>{t('modelProfiles.model')}</label>
          <input
            id={fid('model')}
            className="input mono"
            list={`${uid}-models`}
            placeholder="flm://engine/model"
            value={form.model}
            onChange={(e) => set({ model: e.target.value })}
            {...aria('model')}
          />
          <datalist id={`${uid}-models`}>
            {(models.data?.models ?? []).map((m) => (
              <option key={m.id} value={m.id} />
            ))}
          </datalist>
          <p className="muted small">{t('modelProfiles.modelHint')}</p>
          {errors('model')}
        </div>
        <div className="field">
          <label htmlFor={fid('parameters')}>{t('modelProfiles.parameters')}</label>
          <textarea id={fid('parameters')} className="input mono" rows={6} value={form.params} onChange={(e) => set({ params: e.target.value })} {...aria('parameters')} />
          <p className="muted small">
            {t('modelProfiles.parametersHint')}{' '}
            <code>{(res.data?.parameter_names ?? []).join(', ')}</code>
          </p>
          {errors('parameters')}
        </div>
        <details className="field">
          <summary>{t('modelProfiles.preview')}</summary>
          <p className="muted small">{t('modelProfiles.previewHelp')}</p>
          <pre className="code-block">{exampleRequest(form.label)}</pre>
        </details>
        {action.error && !deleting && serverFields.length === 0 && <ErrorBox error={action.error} />}
        {saved && (
          <p className="alert alert-success" role="status">
            <Trans i18nKey="modelProfiles.saved" values={{ id: saved }} components={DATA} />
          </p>
        )}
        <div className="row">
          <button type="submit" className="btn btn-primary" disabled={action.busy}>
            {action.busy ? t('common.working') : t('modelProfiles.save')}
          </button>
          {form.id && (
            <button
              type="button"
              className="btn btn-secondary"
              onClick={() => {
                setForm(EMPTY_PROFILE);
                setChecked(false);
                action.clear();
              }}
            >
              {t('common.cancel')}
            </button>
          )}
        </div>
      </form>

      <div className="card">
        <div className="field">
          <label htmlFor={`${uid}-filter`}>{t('modelProfiles.filter')}</label>
          <input id={`${uid}-filter`} className="input" type="search" value={query} onChange={(e) => setQuery(e.target.value)} />
        </div>
        {res.loading && !res.data && <Loading />}
        {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
        {res.data &&
          (list.length === 0 ? (
            <Empty>{t('modelProfiles.empty')}</Empty>
          ) : (
            <div className="table-wrap">
              <p className="muted small">{t('common.total', { count: list.length })}</p>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t('modelProfiles.label')}</th>
                    <th scope="col">{t('modelProfiles.modelId')}</th>
                    <th scope="col">{t('modelProfiles.target')}</th>
                    <th scope="col">{t('modelProfiles.parameters')}</th>
                    <th scope="col">{t('modelProfiles.updated')}</th>
                    <th scope="col">{t('common.actions')}</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((p) => (
                    <tr key={p.id}>
                      <td className="mono">{p.label}</td>
                      <td className="mono">{p.model_id}</td>
                      <td className="mono">{p.target}</td>
                      <td className="mono small">{paramsSummary(p.parameters)}</td>
                      <td>{fmtTime(p.updated_at)}</td>
                      <td className="nowrap">
                        <button
                          type="button"
                          className="btn btn-secondary btn-small"
                          onClick={() => {
                            setForm(profileForm(p));
                            setChecked(false);
                            setSaved(null);
                            action.clear();
                          }}
                          aria-label={`${t('common.edit')}: ${p.label}`}
                        >
                          {t('common.edit')}
                        </button>{' '}
                        <button type="button" className="btn btn-danger btn-small" onClick={() => setDeleting(p)} aria-label={`${t('common.delete')}: ${p.label}`}>
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
          title={t('modelProfiles.deleteTitle')}
          message={<Trans i18nKey="modelProfiles.deleteMessage" values={{ label: deleting.label }} components={DATA} />}
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
