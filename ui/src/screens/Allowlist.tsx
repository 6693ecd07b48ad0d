import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import { ConfirmDialog, Empty, ErrorBox, Loading } from '../components/common';
import { fmtTime } from '../state/format';
import { isIpOrCidr } from '../state/ip';

export default function Allowlist() {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(() => api.allowlist(), [], ['policy']);
  const action = useAction();
  const [entry, setEntry] = useState('');
  const [invalid, setInvalid] = useState<string | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);

  const add = async (e: React.FormEvent) => {
    e.preventDefault();
    if (entry.trim() === '') return setInvalid(t('allowlist.required'));
    if (!isIpOrCidr(entry)) return setInvalid(t('allowlist.invalid'));
    setInvalid(null);
    if ((await action.run(() => api.allow(entry.trim()))) !== undefined) {
      setEntry('');
      res.reload();
    }
  };
  const remove = async () => {
    if (removing === null) return;
    const target = removing;
    if ((await action.run(() => api.disallow(target))) !== undefined) {
      setRemoving(null);
      res.reload();
    }
  };
  const serverFieldErrors = action.error?.fields ?? [];

  return (
    <section>
      <h1>{t('allowlist.title')}</h1>
      <p className="muted">{t('allowlist.help')}</p>
      <form className="card row" onSubmit={(e) => void add(e)} noValidate>
        <div className="grow">
          <label htmlFor={`${uid}-entry`}>{t('allowlist.entry')}</label>
          <input
            id={`${uid}-entry`}
            className="input mono"
            placeholder={t('allowlist.placeholder')}
            value={entry}
            onChange={(e) => setEntry(e.target.value)}
            aria-invalid={Boolean(invalid || serverFieldErrors.length)}
            aria-describedby={invalid || serverFieldErrors.length ? `${uid}-err` : undefined}
          />
          <div id={`${uid}-err`}>
            {invalid && <p className="error-text small">{invalid}</p>}
            {serverFieldErrors.map((f) => (
              <p key={f.path} className="error-text small">
                {f.message}
              </p>
            ))}
          </div>
        </div>
        <button type="submit" className="btn btn-primary align-end" disabled={action.busy}>
          {t('allowlist.add')}
        </button>
      </form>
      {res.data && res.data.entries.length > 0 && res.data.entries.every((e) => /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|169\.254\.|fe80:|127\.|::1)/i.test(e.entry)) && (
        <p className="alert alert-info">{t('allowlist.privateOnly')}</p>
      )}
      {action.error && !removing && <ErrorBox error={action.error} />}
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.entries.length === 0 ? (
          <Empty>{t('allowlist.empty')}</Empty>
        ) : (
          <div className="card table-wrap">
            <p className="muted small">{t('common.total', { count: res.data.entries.length })}</p>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('allowlist.entry')}</th>
                  <th scope="col">{t('allowlist.addedAt')}</th>
                  <th scope="col">{t('common.actions')}</th>
                </tr>
              </thead>
              <tbody>
                {res.data.entries.map((e) => (
                  <tr key={e.entry}>
                    <td className="mono">{e.entry}</td>
                    <td>{fmtTime(e.added_at)}</td>
                    <td>
                      <button type="button" className="btn btn-danger btn-small" onClick={() => setRemoving(e.entry)} aria-label={`${t('common.delete')}: ${e.entry}`}>
                        {t('common.delete')}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      {removing !== null && (
        <ConfirmDialog
          title={t('confirmDialog.removeAllow.title')}
          message={t('confirmDialog.removeAllow.message', { entry: removing })}
          confirmLabel={t('confirmDialog.removeAllow.confirm')}
          danger
          busy={action.busy}
          error={action.error}
          onConfirm={() => void remove()}
          onCancel={() => {
            action.clear();
            setRemoving(null);
          }}
        />
      )}
    </section>
  );
}
