import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import { ConfirmDialog, Empty, ErrorBox, Loading, StatusBadge } from '../components/common';
import { fmtTime } from '../state/format';
import { isIpOrCidr } from '../state/ip';

const DURATIONS: { secs: number | null; key: string }[] = [
  { secs: 900, key: 'blocklist.duration.15m' },
  { secs: 3600, key: 'blocklist.duration.1h' },
  { secs: 86400, key: 'blocklist.duration.24h' },
  { secs: 604800, key: 'blocklist.duration.7d' },
  { secs: null, key: 'blocklist.duration.permanent' },
];

type Pending = { kind: 'block' } | { kind: 'unblock'; ip: string } | { kind: 'clear' } | null;

export default function Blocklist() {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(() => api.blocklist(), [], ['ban', 'unblock']);
  const action = useAction();
  const [ip, setIp] = useState('');
  const [duration, setDuration] = useState('3600');
  const [reason, setReason] = useState('');
  const [invalid, setInvalid] = useState(false);
  const [pending, setPending] = useState<Pending>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const askBlock = (e: React.FormEvent) => {
    e.preventDefault();
    if (!isIpOrCidr(ip)) {
      setInvalid(true);
      return;
    }
    setInvalid(false);
    setPending({ kind: 'block' });
  };

  const confirm = async () => {
    if (!pending) return;
    setNotice(null);
    let ok: unknown;
    if (pending.kind === 'block') {
      const secs = duration === 'permanent' ? null : Number(duration);
      ok = await action.run(() => api.block(ip.trim(), secs, reason.trim() || undefined));
      if (ok !== undefined) {
        setIp('');
        setReason('');
      }
    } else if (pending.kind === 'unblock') {
      const target = pending.ip;
      ok = await action.run(async () => {
        await api.unblock(target);
        return true;
      });
    } else {
      const r = await action.run(() => api.clearTemporary());
      ok = r;
      if (r) setNotice(t('blocklist.cleared', { count: r.cleared }));
    }
    if (ok !== undefined) {
      setPending(null);
      res.reload();
    }
  };

  const dialog = pending && (
    <ConfirmDialog
      title={
        pending.kind === 'block' ? t('confirmDialog.blockIp.title') : pending.kind === 'unblock' ? t('confirmDialog.unblockIp.title') : t('confirmDialog.clearTemporary.title')
      }
      message={
        pending.kind === 'block'
          ? t('confirmDialog.blockIp.message', { ip: ip.trim() })
          : pending.kind === 'unblock'
            ? t('confirmDialog.unblockIp.message', { ip: pending.ip })
            : t('confirmDialog.clearTemporary.message')
      }
      confirmLabel={
        pending.kind === 'block' ? t('confirmDialog.blockIp.confirm') : pending.kind === 'unblock' ? t('confirmDialog.unblockIp.confirm') : t('confirmDialog.clearTemporary.confirm')
      }
      danger={pending.kind !== 'unblock'}
      busy={action.busy}
      error={action.error}
      onConfirm={() => void confirm()}
      onCancel={() => {
        action.clear();
        setPending(null);
      }}
    />
  );

  return (
    <section>
      <h1>{t('blocklist.title')}</h1>
      <p className="muted">{t('blocklist.help')}</p>
      <form className="card filters" onSubmit={askBlock} noValidate>
        <div>
          <label htmlFor={`${uid}-ip`}>{t('blocklist.ip')}</label>
          <input
            id={`${uid}-ip`}
            className="input mono"
            value={ip}
            placeholder="203.0.113.7"
            onChange={(e) => setIp(e.target.value)}
            aria-invalid={invalid}
            aria-describedby={invalid ? `${uid}-ip-err` : undefined}
          />
          {invalid && (
            <p id={`${uid}-ip-err`} className="error-text small">
              {ip.trim() === '' ? t('blocklist.ipRequired') : t('blocklist.ipInvalid')}
            </p>
          )}
        </div>
        <div>
          <label htmlFor={`${uid}-dur`}>{t('blocklist.durationLabel')}</label>
          <select id={`${uid}-dur`} className="input" value={duration} onChange={(e) => setDuration(e.target.value)}>
            {DURATIONS.map((d) => (
              <option key={d.key} value={d.secs === null ? 'permanent' : String(d.secs)}>
                {t(d.key)}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor={`${uid}-reason`}>{t('blocklist.reason')}</label>
          <input id={`${uid}-reason`} className="input" value={reason} onChange={(e) => setReason(e.target.value)} />
        </div>
        <div className="row align-end">
          <button type="submit" className="btn btn-danger">
            {t('blocklist.block')}
          </button>
        </div>
      </form>
      <div className="row">
        <button type="button" className="btn btn-secondary" onClick={res.reload}>
          {t('common.refresh')}
        </button>
        <button type="button" className="btn btn-secondary" onClick={() => setPending({ kind: 'clear' })}>
          {t('blocklist.clearTemporary')}
        </button>
      </div>
      {notice && (
        <p className="alert alert-success" role="status">
          {notice}
        </p>
      )}
      {action.error && !pending && <ErrorBox error={action.error} />}
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.entries.length === 0 ? (
          <Empty>{t('blocklist.empty')}</Empty>
        ) : (
          <div className="table-wrap card">
            <p className="muted small">{t('common.total', { count: res.data.entries.length })}</p>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('blocklist.ip')}</th>
                  <th scope="col">{t('blocklist.kind')}</th>
                  <th scope="col">{t('blocklist.until')}</th>
                  <th scope="col">{t('blocklist.failures')}</th>
                  <th scope="col">{t('blocklist.reason')}</th>
                  <th scope="col">{t('blocklist.lastFailure')}</th>
                  <th scope="col">{t('common.actions')}</th>
                </tr>
              </thead>
              <tbody>
                {res.data.entries.map((b) => (
                  <tr key={b.ip}>
                    <td className="mono">{b.ip}</td>
                    <td>
                      <StatusBadge status={b.kind} />
                    </td>
                    <td>{b.kind === 'permanent' ? t('blocklist.never') : fmtTime(b.blocked_until)}</td>
                    <td>{b.failure_count}</td>
                    <td>{b.reason ?? '—'}</td>
                    <td>{fmtTime(b.last_failure_at)}</td>
                    <td>
                      <button type="button" className="btn btn-secondary btn-small" onClick={() => setPending({ kind: 'unblock', ip: b.ip })} aria-label={`${t('blocklist.unblock')}: ${b.ip}`}>
                        {t('blocklist.unblock')}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      {dialog}
    </section>
  );
}
