import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useResource } from '../api/hooks';
import { LineChart } from '../components/Chart';
import { Empty, ErrorBox, Loading, StatusBadge } from '../components/common';
import { fmtNum, fmtPct, fmtTime } from '../state/format';

const RANGES = [
  { hours: 24, key: 'comparison.ranges.24h' },
  { hours: 168, key: 'comparison.ranges.7d' },
  { hours: 720, key: 'comparison.ranges.30d' },
];

export default function ModelComparison() {
  const { t } = useTranslation();
  const uid = useId();
  const [hours, setHours] = useState(24);
  const [engine, setEngine] = useState('');
  const [model, setModel] = useState('');
  const [applied, setApplied] = useState({ engine: '', model: '' });
  const res = useResource(
    () => api.healthHistory({ hours, limit: 500, engine_id: applied.engine || undefined, model: applied.model || undefined }),
    [hours, applied.engine, applied.model],
    ['engine'],
  );
  const samples = res.data ? [...res.data.samples].sort((a, b) => a.at.localeCompare(b.at)) : [];
  return (
    <section>
      <h1>{t('comparison.title')}</h1>
      <p className="muted">{t('comparison.help')}</p>
      <form
        className="filters card"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ engine: engine.trim(), model: model.trim() });
        }}
      >
        <div>
          <label htmlFor={`${uid}-range`}>{t('comparison.range')}</label>
          <select id={`${uid}-range`} className="input" value={hours} onChange={(e) => setHours(Number(e.target.value))}>
            {RANGES.map((r) => (
              <option key={r.hours} value={r.hours}>
                {t(r.key)}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor={`${uid}-engine`}>{t('comparison.engine')}</label>
          <input id={`${uid}-engine`} className="input" value={engine} onChange={(e) => setEngine(e.target.value)} />
        </div>
        <div>
          <label htmlFor={`${uid}-model`}>{t('comparison.model')}</label>
          <input id={`${uid}-model`} className="input" value={model} onChange={(e) => setModel(e.target.value)} />
        </div>
        <div className="align-end">
          <button type="submit" className="btn btn-primary">
            {t('security.filter.apply')}
          </button>
        </div>
      </form>
      {res.loading && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data &&
        (res.data.summary.length === 0 ? (
          <Empty>{t('comparison.empty')}</Empty>
        ) : (
          <>
            <section className="card table-wrap" aria-labelledby={`${uid}-sum`}>
              <h2 id={`${uid}-sum`}>{t('comparison.summary')}</h2>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t('comparison.engine')}</th>
                    <th scope="col">{t('comparison.model')}</th>
                    <th scope="col">{t('comparison.samples')}</th>
                    <th scope="col">{t('comparison.successRate')}</th>
                    <th scope="col">{t('comparison.avgLatency')}</th>
                    <th scope="col">{t('comparison.errorRate')}</th>
                  </tr>
                </thead>
                <tbody>
                  {res.data.summary.map((s) => (
                    <tr key={`${s.engine_id}/${s.model ?? ''}`}>
                      <td>{s.engine_id}</td>
                      <td className="mono">{s.model ?? '—'}</td>
                      <td>{fmtNum(s.samples)}</td>
                      <td>{fmtPct(s.success_rate)}</td>
                      <td>{s.avg_latency_ms === null ? '—' : `${fmtNum(s.avg_latency_ms)} ms`}</td>
                      <td>{fmtPct(s.error_rate)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
            <section className="card" aria-labelledby={`${uid}-lat`}>
              <h2 id={`${uid}-lat`}>{t('comparison.latencyChart')}</h2>
              <LineChart
                title={t('comparison.latencyChart')}
                labels={samples.map((s) => fmtTime(s.at))}
                series={[{ name: t('comparison.latency'), className: 's-primary', values: samples.map((s) => s.latency_ms ?? 0) }]}
              />
            </section>
            <section className="card table-wrap" aria-labelledby={`${uid}-hist`}>
              <h2 id={`${uid}-hist`}>{t('comparison.samplesTitle')}</h2>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t('security.col.at')}</th>
                    <th scope="col">{t('comparison.engine')}</th>
                    <th scope="col">{t('comparison.model')}</th>
                    <th scope="col">{t('dashboard.engines.status')}</th>
                    <th scope="col">{t('comparison.latency')}</th>
                    <th scope="col">{t('comparison.error')}</th>
                  </tr>
                </thead>
                <tbody>
                  {res.data.samples.slice(0, 100).map((s, i) => (
                    <tr key={i}>
                      <td>{fmtTime(s.at)}</td>
                      <td>{s.engine_id}</td>
                      <td className="mono">{s.model ?? '—'}</td>
                      <td>
                        <StatusBadge status={s.status} />
                      </td>
                      <td>{s.latency_ms === null ? '—' : `${fmtNum(s.latency_ms)} ms`}</td>
                      <td className="small">{s.error ?? '—'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          </>
        ))}
    </section>
  );
}
