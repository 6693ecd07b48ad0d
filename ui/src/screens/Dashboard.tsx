import { useState } from 'react';
import { Link } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import type { Dashboard as DashboardData, ProxyView } from '../api/types';
import { ConfirmDialog, CopyButton, Empty, ErrorBox, Loading, StatusBadge } from '../components/common';
import { fmtNum, fmtTime } from '../state/format';
import { fixRoute, START_MODES } from '../state/routes';
import { capabilityList } from '../state/values';

function ProxyPanel({ proxy, onChanged }: { proxy: ProxyView; onChanged: () => void }) {
  const { t } = useTranslation();
  const action = useAction();
  const [confirmStop, setConfirmStop] = useState(false);
  const [mode, setMode] = useState<string>('local-http');
  const [port, setPort] = useState('');
  const portBad = port.trim() !== '' && !/^\d{1,5}$/.test(port.trim());
  const start = async () => {
    if (portBad) return;
    const req = { mode, ...(port.trim() ? { port: Number(port.trim()) } : {}) };
    if ((await action.run(() => api.startProxy(req))) !== undefined) onChanged();
  };
  const stop = async () => {
    if ((await action.run(() => api.stopProxy())) !== undefined) {
      setConfirmStop(false);
      onChanged();
    }
  };
  const runningMode = proxy.mode;
  const rows: [string, React.ReactNode][] = [
    [
      t('dashboard.proxy.mode'),
      runningMode === null ? '—' : (START_MODES as readonly string[]).includes(runningMode) ? t(`dashboard.proxy.modes.${runningMode}`) : <span className="mono">{runningMode}</span>,
    ],
    [t('dashboard.proxy.listen'), proxy.listen ?? '—'],
    [t('dashboard.proxy.port'), proxy.port === null ? '—' : String(proxy.port)],
    [t('dashboard.proxy.httpsPort'), proxy.https_port === null ? '—' : String(proxy.https_port)],
    [t('dashboard.proxy.acmeDomain'), proxy.acme_domain ?? '—'],
    // "direct", else the SOCKS/Tor URL (data).
    [
      t('dashboard.proxy.egress'),
      proxy.egress === null ? '—' : proxy.egress === 'direct' ? t('values.egress.direct') : <span className="mono">{proxy.egress}</span>,
    ],
    [
      t('dashboard.proxy.certificate'),
      proxy.certificate
        ? t('dashboard.proxy.certificateValue', {
            subject: proxy.certificate.subject,
            date: fmtTime(proxy.certificate.not_after),
            days: proxy.certificate.days_left,
          }) + (proxy.certificate.self_signed ? ` (${t('dashboard.proxy.selfSigned')})` : '')
        : t('dashboard.proxy.noCertificate'),
    ],
    [t('dashboard.proxy.startedAt'), fmtTime(proxy.started_at)],
  ];
  return (
    <section className="card" aria-labelledby="proxy-h">
      <h2 id="proxy-h">{t('dashboard.proxy.title')}</h2>
      <p>
        <StatusBadge status={proxy.running ? 'running' : 'stopped'} />
      </p>
      <dl className="kv">
        {rows.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      <div className="row">
        {proxy.running ? (
          <button type="button" className="btn btn-danger" onClick={() => setConfirmStop(true)} disabled={action.busy}>
            {t('dashboard.proxy.stop')}
          </button>
        ) : (
          <form
            className="filters"
            onSubmit={(e) => {
              e.preventDefault();
              void start();
            }}
          >
            <div>
              <label htmlFor="start-mode">{t('dashboard.proxy.mode')}</label>
              <select id="start-mode" className="input" value={mode} onChange={(e) => setMode(e.target.value)}>
                {START_MODES.map((m) => (
                  <option key={m} value={m}>
                    {t(`dashboard.proxy.modes.${m}`)}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label htmlFor="start-port">{t('dashboard.proxy.port')}</label>
              <input
                id="start-port"
                className="input"
                inputMode="numeric"
                placeholder={t('dashboard.proxy.portDefault')}
                value={port}
                onChange={(e) => setPort(e.target.value)}
                aria-invalid={portBad}
                aria-describedby={portBad ? 'start-port-err' : undefined}
              />
              {portBad && (
                <p id="start-port-err" className="error-text small">
                  {t('dashboard.proxy.portInvalid')}
                </p>
              )}
            </div>
            <div className="align-end">
              <button type="submit" className="btn btn-primary" disabled={action.busy || portBad}>
                {action.busy ? t('common.working') : t('dashboard.proxy.start')}
              </button>
            </div>
          </form>
        )}
      </div>
      {action.error && !confirmStop && <ErrorBox error={action.error} />}
      {confirmStop && (
        <ConfirmDialog
          title={t('confirmDialog.stopServer.title')}
          message={t('confirmDialog.stopServer.message')}
          confirmLabel={t('confirmDialog.stopServer.confirm')}
          danger
          busy={action.busy}
          error={action.error}
          onConfirm={() => void stop()}
          onCancel={() => {
            action.clear();
            setConfirmStop(false);
          }}
        />
      )}
    </section>
  );
}

function Engines({ data, onChanged }: { data: DashboardData; onChanged: () => void }) {
  const { t } = useTranslation();
  const action = useAction();
  const detect = async () => {
    if ((await action.run(() => api.detectEngines())) !== undefined) onChanged();
  };
  return (
    <section className="card wide" aria-labelledby="engines-h">
      <div className="card-head">
        <h2 id="engines-h">{t('dashboard.engines.title')}</h2>
        <button type="button" className="btn btn-secondary" onClick={() => void detect()} disabled={action.busy}>
          {action.busy ? t('dashboard.engines.detecting') : t('dashboard.engines.detect')}
        </button>
      </div>
      {action.error && <ErrorBox error={action.error} />}
      {data.engines.length === 0 ? (
        <Empty>{t('dashboard.engines.empty')}</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t('dashboard.engines.name')}</th>
                <th scope="col">{t('dashboard.engines.status')}</th>
                <th scope="col">{t('dashboard.engines.latency')}</th>
                <th scope="col">{t('dashboard.engines.models')}</th>
                <th scope="col">{t('dashboard.engines.capabilities')}</th>
              </tr>
            </thead>
            <tbody>
              {data.engines.map((e) => (
                <tr key={e.id}>
                  <td>
                    <strong translate="no">{e.name}</strong>
                    <div className="muted small mono">
                      {e.kind} · {e.base_url}
                    </div>
                    {e.error && <div className="error-text small">{e.error}</div>}
                  </td>
                  <td>
                    <StatusBadge status={e.status} />
                    <div className="muted small">{fmtTime(e.checked_at)}</div>
                  </td>
                  <td>{e.latency_ms === null ? '—' : `${fmtNum(e.latency_ms)} ms`}</td>
                  <td>
                    {e.models.length === 0 ? (
                      '—'
                    ) : (
                      <ul className="plain">
                        {e.models.map((m) => (
                          <li key={m.id}>
                            <span className="mono">{m.name}</span>
                            {m.capabilities.length > 0 && <span className="muted small"> ({capabilityList(t, m.capabilities)})</span>}
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td>{e.capabilities.length ? capabilityList(t, e.capabilities) : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export default function Dashboard() {
  const { t } = useTranslation();
  const res = useResource(() => api.dashboard(), [], ['engine', 'proxy', 'keys', 'policy', 'config']);
  return (
    <section>
      <h1>{t('dashboard.title')}</h1>
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data && (
        <div className="grid">
          <section className="card wide" aria-labelledby="warn-h">
            <h2 id="warn-h">{t('dashboard.security.title')}</h2>
            <p>{t('dashboard.security.keyCount', { count: res.data.key_count })}</p>
            <p>
              <Link to="/setup">{t('setupWizard.launch')}</Link>
            </p>
            {res.data.warnings.length === 0 ? (
              <p className="ok-text">{t('dashboard.security.allGood')}</p>
            ) : (
              <ul className="warnings">
                {res.data.warnings.map((w) => (
                  <li key={w.code} className="alert alert-warning">
                    <span>{t(`dashboard.warnings.${w.code}`)}</span>{' '}
                    {fixRoute(w.fix_route) !== null ? <Link to={fixRoute(w.fix_route) ?? '/'}>{t('dashboard.security.fix')}</Link> : <span>{t('dashboard.security.httpsHint')}</span>}
                  </li>
                ))}
              </ul>
            )}
          </section>
          <ProxyPanel proxy={res.data.proxy} onChanged={res.reload} />
          <section className="card" aria-labelledby="ep-h">
            <h2 id="ep-h">{t('dashboard.endpoints.title')}</h2>
            {res.data.endpoints.length === 0 ? (
              <Empty>{t('dashboard.endpoints.empty')}</Empty>
            ) : (
              <ul className="plain endpoints">
                {res.data.endpoints.map((ep) => (
                  <li key={ep.scope + ep.url}>
                    <div className="small muted">{t(`dashboard.endpoints.${ep.scope}`)}</div>
                    <div className="row">
                      <code className="grow">{ep.url}</code>
                      <CopyButton text={ep.url} label={t(`dashboard.endpoints.${ep.scope}`)} />
                    </div>
                  </li>
                ))}
              </ul>
            )}
            <p className="muted small">{t('dashboard.endpoints.help')}</p>
          </section>
          <Engines data={res.data} onChanged={res.reload} />
        </div>
      )}
    </section>
  );
}
