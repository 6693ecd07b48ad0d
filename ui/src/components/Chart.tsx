import { useTranslation } from 'react-i18next';

export interface Series {
  name: string;
  className: string;
  values: number[];
}

/** A small line chart in SVG (no chart library: keeps the bundle small and CSP-clean). */
export function LineChart({ labels, series, title }: { labels: string[]; series: Series[]; title: string }) {
  const { t } = useTranslation();
  const W = 640;
  const H = 200;
  const P = 32;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const n = Math.max(1, labels.length - 1);
  const x = (i: number) => P + ((W - 2 * P) * i) / n;
  const y = (v: number) => H - P - ((H - 2 * P) * v) / max;
  if (labels.length === 0) return <p className="empty">{t('chart.noData')}</p>;
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
        <line x1={P} y1={H - P} x2={W - P} y2={H - P} className="axis" />
        <line x1={P} y1={P} x2={P} y2={H - P} className="axis" />
        <text x={P - 4} y={P + 4} textAnchor="end" className="tick">
          {max}
        </text>
        <text x={P - 4} y={H - P} textAnchor="end" className="tick">
          0
        </text>
        <text x={P} y={H - 8} className="tick">
          {labels[0]}
        </text>
        <text x={W - P} y={H - 8} textAnchor="end" className="tick">
          {labels[labels.length - 1]}
        </text>
        {series.map((s) => (
          <polyline key={s.name} className={s.className} fill="none" points={s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ')} />
        ))}
      </svg>
      <figcaption className="legend">
        {series.map((s) => (
          <span key={s.name} className={`legend-item ${s.className}`}>
            {s.name}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
