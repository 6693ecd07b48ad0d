import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useResource } from '../api/hooks';
import type { UsageGroupBy, UsageRange } from '../api/types';
import { LineChart } from '../components/Chart';
import { Empty, ErrorBox, Loading } from '../components/common';
import { fmtNum } from '../state/format';

const RANGES: UsageRange[] = ['1h', '24h', '7d'];
const GROUPS: UsageGroupBy[] = ['key', 'model', 'engine'];

function ms(v: number | null): string {
  return v === null ? '—' : `${fmtNum(v)} ms`;
}

export default function Usage() {
  const { t, i18n } = useTranslation();
  const uid = useId();
  const [range, setRange] = useState<UsageRange>('24h');
  const [groupBy, setGroupBy] = useState<UsageGroupBy>('model');
  const res = useResource(() => api.usage(range, groupBy), [range, groupBy]);
  const locale = i18n.language === 'ja' ? 'ja-JP' : 'en-US';
  const label = (iso: string) => new Date(iso).toLocaleString(locale, range === '7d' ? { month: 'numeric', day: 'numeric', hour: '2-digit' } : { hour: '2-digit', minute: '2-digit' });

  return (
    <section>
      <h1>{t('usage.title')}</h1>
      <p className="muted">{t('usage.help')}</p>
      <div className="filters card">
        <div>
          <label htmlFor={`${uid}-range`}>{t('usage.range')}</label>
          <select id={`${uid}-range`} className="input" value={range} onChange={(e) => setRange(e.target.value as UsageRange)}>
            {RANGES.map((r) => (
              <option key={r} value={r}>
                {t(`usage.ranges.${r}`)}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor={`${uid}-group`}>{t('usage.groupBy')}</label>
          <select id={`${uid}-group`} className="input" value={groupBy} onChange={(e) => setGroupBy(e.target.value as UsageGroupBy)}>
            {GROUPS.map((g) => (
              <option key={g} value={g}>
                {t(`usage.groups.${g}`)}
              </option>
            ))}
          </select>
        </div>
        <div className="align-end">
          <button type="button" className="btn btn-secondary" onClick={res.reload}>
            {t('common.refresh')}
          </button>
        </div>
      </div>
      {res.loading && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data && (
        <>
          <section className="card" aria-labelledby={`${uid}-chart`}>
            <h2 id={`${uid}-chart`}>{t('usage.series')}</h2>
            <LineChart
              title={t('usage.series')}
              labels={res.data.series.map((p) => label(p.at))}
              series={[
                { name: t('usage.requests'), className: 's-primary', values: res.data.series.map((p) => p.requests) },
                { name: t('usage.errors'), className: 's-error', values: res.data.series.map((p) => p.errors) },
              ]}
            />
          </section>
          <section className="card table-wrap" aria-labelledby={`${uid}-table`}>
            <h2 id={`${uid}-table`}>{t(`usage.byGroup.${groupBy}`)}</h2>
            {res.data.groups.length === 0 ? (
              <Empty>{t('usage.empty')}</Empty>
            ) : (
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t(`usage.groups.${groupBy}`)}</th>
                    <th scope="col">{t('usage.requests')}</th>
                    <th scope="col">{t('usage.errors')}</th>
                    <th scope="col">{t('usage.tokensIn')}</th>
                    <th scope="col">{t('usage.tokensOut')}</th>
                    <th scope="col">{t('usage.latencyP50')}</th>
                    <th scope="col">{t('usage.latencyP95')}</th>
                    <th scope="col">{t('usage.ttftP50')}</th>
                    <th scope="col">{t('usage.ttftP95')}</th>
                  </tr>
                </thead>
                <tbody>
                  {res.data.groups.map((g) => (
                    <tr key={g.group}>
                      <td>
                        {g.label ?? g.group}
                        {g.label && <div className="muted small mono">{g.group}</div>}
                      </td>
                      <td>{fmtNum(g.requests)}</td>
                      <td>{fmtNum(g.errors)}</td>
                      <td>{fmtNum(g.tokens_in)}</td>
                      <td>{fmtNum(g.tokens_out)}</td>
                      <td>{ms(g.latency_p50_ms)}</td>
                      <td>{ms(g.latency_p95_ms)}</td>
                      <td>{ms(g.ttft_p50_ms)}</td>
                      <td>{ms(g.ttft_p95_ms)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </section>
  );
}
