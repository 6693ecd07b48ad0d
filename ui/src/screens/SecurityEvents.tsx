import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import type { AnomalyView, AuditView, EventFilters, IntrusionView, JsonValue, Page } from '../api/types';
import { Empty, ErrorBox, Loading } from '../components/common';
import { fmtNum, fmtTime } from '../state/format';
import { useCursorPager } from '../state/paging';

type Tab = 'audit' | 'intrusion' | 'anomaly';
const EVENT_TYPES = ['auth_success', 'auth_failure', 'ip_blocked', 'intrusion', 'anomaly', 'rate_limit'];
const SEVERITIES = ['low', 'medium', 'high', 'critical'];
const PAGE_SIZE = 50;

interface FilterForm {
  event_type: string;
  severity: string;
  ip: string;
  key_id: string;
  since: string;
  until: string;
  q: string;
}
const EMPTY: FilterForm = { event_type: '', severity: '', ip: '', key_id: '', since: '', until: '', q: '' };

function toIso(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function toFilters(f: FilterForm, tab: Tab): EventFilters {
  const base: EventFilters = { ip: f.ip.trim(), since: toIso(f.since), until: toIso(f.until), q: f.q.trim() };
  return tab === 'audit' ? { ...base, event_type: f.event_type, severity: f.severity, key_id: f.key_id.trim() } : base;
}

function Summary() {
  const { t } = useTranslation();
  const res = useResource(() => api.securitySummary(), [], ['ban', 'unblock']);
  if (res.error) return <ErrorBox error={res.error} onRetry={res.reload} />;
  if (!res.data) return <Loading />;
  const cards: [string, number][] = [
    [t('security.summary.blockedIps'), res.data.blocked_ips],
    [t('security.summary.audit24h'), res.data.audit_last_24h],
    [t('security.summary.intrusions24h'), res.data.intrusions_last_24h],
    [t('security.summary.anomalies24h'), res.data.anomalies_last_24h],
  ];
  return (
    <div className="stat-row">
      {cards.map(([k, v]) => (
        <div key={k} className="stat">
          <div className="stat-value">{fmtNum(v)}</div>
          <div className="stat-label">{k}</div>
        </div>
      ))}
    </div>
  );
}

/** Stored details: a JSON document, or the stored text when it is not JSON. */
function Details({ value }: { value: JsonValue }) {
  if (value === null || value === '' || (typeof value === 'object' && Object.keys(value).length === 0)) return <>—</>;
  return <code className="small wrap">{typeof value === 'string' ? value : JSON.stringify(value)}</code>;
}

function AuditTable({ items }: { items: AuditView[] }) {
  const { t } = useTranslation();
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">{t('security.col.at')}</th>
          <th scope="col">{t('security.col.eventType')}</th>
          <th scope="col">{t('security.col.severity')}</th>
          <th scope="col">{t('security.col.ip')}</th>
          <th scope="col">{t('security.col.endpoint')}</th>
          <th scope="col">{t('security.col.status')}</th>
          <th scope="col">{t('security.col.requestId')}</th>
          <th scope="col">{t('security.col.details')}</th>
        </tr>
      </thead>
      <tbody>
        {items.map((r) => (
          <tr key={r.id}>
            <td className="nowrap">{fmtTime(r.at)}</td>
            <td className="nowrap">{EVENT_TYPES.includes(r.event_type) ? t(`security.eventType.${r.event_type}`) : <span className="mono">{r.event_type}</span>}</td>
            <td className="nowrap">{SEVERITIES.includes(r.severity) ? t(`security.severity.${r.severity}`) : r.severity}</td>
            <td className="mono">{r.ip ?? '—'}</td>
            <td className="mono small">{[r.method, r.endpoint].filter(Boolean).join(' ') || '—'}</td>
            <td>{r.status ?? '—'}</td>
            <td className="mono small">{r.request_id ?? '—'}</td>
            <td>
              <Details value={r.details} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function IntrusionTable({ items }: { items: IntrusionView[] }) {
  const { t } = useTranslation();
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">{t('security.col.at')}</th>
          <th scope="col">{t('security.col.ip')}</th>
          <th scope="col">{t('security.col.pattern')}</th>
          <th scope="col">{t('security.col.score')}</th>
          <th scope="col">{t('security.col.endpoint')}</th>
          <th scope="col">{t('security.col.requestId')}</th>
        </tr>
      </thead>
      <tbody>
        {items.map((r) => (
          <tr key={r.id}>
            <td className="nowrap">{fmtTime(r.at)}</td>
            <td className="mono">{r.ip}</td>
            <td>{r.pattern}</td>
            <td>{r.score}</td>
            <td className="mono small">{[r.method, r.path].filter(Boolean).join(' ') || '—'}</td>
            <td className="mono small">{r.request_id ?? '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function AnomalyTable({ items }: { items: AnomalyView[] }) {
  const { t } = useTranslation();
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">{t('security.col.at')}</th>
          <th scope="col">{t('security.col.ip')}</th>
          <th scope="col">{t('security.col.kind')}</th>
          <th scope="col">{t('security.col.score')}</th>
          <th scope="col">{t('security.col.details')}</th>
        </tr>
      </thead>
      <tbody>
        {items.map((r) => (
          <tr key={r.id}>
            <td className="nowrap">{fmtTime(r.at)}</td>
            <td className="mono">{r.ip}</td>
            <td>{r.kind}</td>
            <td>{r.score}</td>
            <td>
              <Details value={r.details} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type AnyPage = { tab: 'audit'; page: Page<AuditView> } | { tab: 'intrusion'; page: Page<IntrusionView> } | { tab: 'anomaly'; page: Page<AnomalyView> };

export default function SecurityEvents() {
  const { t } = useTranslation();
  const uid = useId();
  const [tab, setTab] = useState<Tab>('audit');
  const [draft, setDraft] = useState<FilterForm>(EMPTY);
  const [applied, setApplied] = useState<FilterForm>(EMPTY);
  const pager = useCursorPager();
  const verify = useAction();
  const [verified, setVerified] = useState<{ ok: boolean; checked: number; message: string } | null>(null);

  const filters = toFilters(applied, tab);
  const key = JSON.stringify([tab, filters, pager.cursor]);
  const res = useResource<AnyPage>(
    async () => {
      const f = { ...filters, limit: PAGE_SIZE, cursor: pager.cursor };
      if (tab === 'audit') return { tab, page: await api.audit(f) };
      if (tab === 'intrusion') return { tab, page: await api.intrusions(f) };
      return { tab, page: await api.anomalies(f) };
    },
    [key],
    pager.page === 1 ? ['ban', 'unblock'] : [],
  );

  const switchTab = (next: Tab) => {
    setTab(next);
    pager.reset();
  };
  const apply = (e: React.FormEvent) => {
    e.preventDefault();
    setApplied(draft);
    pager.reset();
  };
  const set = (k: keyof FilterForm) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => setDraft({ ...draft, [k]: e.target.value });
  const runVerify = async () => {
    const r = await verify.run(() => api.verifyAudit());
    if (r) setVerified(r);
  };

  const tabs: Tab[] = ['audit', 'intrusion', 'anomaly'];
  const current = res.data && res.data.tab === tab ? res.data : null;
  const filtered = Object.values(applied).some((v) => v !== '');

  return (
    <section>
      <h1>{t('security.eventsTitle')}</h1>
      <Summary />
      <div role="tablist" aria-label={t('security.eventsTitle')} className="tabs">
        {tabs.map((x) => (
          <button
            key={x}
            type="button"
            role="tab"
            id={`${uid}-tab-${x}`}
            aria-selected={tab === x}
            aria-controls={`${uid}-panel`}
            tabIndex={tab === x ? 0 : -1}
            className={tab === x ? 'tab active' : 'tab'}
            onClick={() => switchTab(x)}
            onKeyDown={(e) => {
              // WAI-ARIA tabs: arrows move between tabs, Home/End to the ends.
              const i = tabs.indexOf(x);
              const to = e.key === 'ArrowRight' ? (i + 1) % tabs.length : e.key === 'ArrowLeft' ? (i + tabs.length - 1) % tabs.length : e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1 : -1;
              const next = tabs[to];
              if (!next) return;
              e.preventDefault();
              switchTab(next);
              document.getElementById(`${uid}-tab-${next}`)?.focus();
            }}
          >
            {t(`security.tab.${x}`)}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`${uid}-panel`} aria-labelledby={`${uid}-tab-${tab}`} className="card">
        <form className="filters" onSubmit={apply}>
          <div>
            <label htmlFor={`${uid}-q`}>{t('security.filter.search')}</label>
            <input id={`${uid}-q`} type="search" className="input" value={draft.q} onChange={set('q')} />
          </div>
          {tab === 'audit' && (
            <>
              <div>
                <label htmlFor={`${uid}-et`}>{t('security.filter.eventType')}</label>
                <select id={`${uid}-et`} className="input" value={draft.event_type} onChange={set('event_type')}>
                  <option value="">{t('security.filter.all')}</option>
                  {EVENT_TYPES.map((x) => (
                    <option key={x} value={x}>
                      {t(`security.eventType.${x}`)}
                    </option>
                  ))}
                </select>
              </div>
              <div>
                <label htmlFor={`${uid}-sev`}>{t('security.filter.severity')}</label>
                <select id={`${uid}-sev`} className="input" value={draft.severity} onChange={set('severity')}>
                  <option value="">{t('security.filter.all')}</option>
                  {SEVERITIES.map((x) => (
                    <option key={x} value={x}>
                      {t(`security.severity.${x}`)}
                    </option>
                  ))}
                </select>
              </div>
              <div>
                <label htmlFor={`${uid}-key`}>{t('security.filter.keyId')}</label>
                <input id={`${uid}-key`} className="input" value={draft.key_id} onChange={set('key_id')} />
              </div>
            </>
          )}
          <div>
            <label htmlFor={`${uid}-ip`}>{t('security.filter.ip')}</label>
            <input id={`${uid}-ip`} className="input" value={draft.ip} onChange={set('ip')} />
          </div>
          <div>
            <label htmlFor={`${uid}-since`}>{t('security.filter.since')}</label>
            <input id={`${uid}-since`} type="datetime-local" className="input" value={draft.since} onChange={set('since')} />
          </div>
          <div>
            <label htmlFor={`${uid}-until`}>{t('security.filter.until')}</label>
            <input id={`${uid}-until`} type="datetime-local" className="input" value={draft.until} onChange={set('until')} />
          </div>
          <div className="row align-end">
            <button type="submit" className="btn btn-primary">
              {t('security.filter.apply')}
            </button>
            <button
              type="button"
              className="btn btn-secondary"
              onClick={() => {
                setDraft(EMPTY);
                setApplied(EMPTY);
                pager.reset();
              }}
            >
              {t('security.filter.clear')}
            </button>
          </div>
        </form>
        {tab === 'audit' && (
          <div className="row">
            <button type="button" className="btn btn-secondary" onClick={() => void runVerify()} disabled={verify.busy}>
              {verify.busy ? t('common.working') : t('security.verify')}
            </button>
            <a className="btn btn-secondary" href={api.exportUrl('jsonl', filters)} download>
              {t('security.exportJsonl')}
            </a>
            <a className="btn btn-secondary" href={api.exportUrl('csv', filters)} download>
              {t('security.exportCsv')}
            </a>
          </div>
        )}
        {verify.error && <ErrorBox error={verify.error} />}
        {verified && tab === 'audit' && (
          <p className={verified.ok ? 'alert alert-success' : 'alert alert-error'} role="status">
            {verified.ok ? t('security.verifyOk', { count: verified.checked }) : t('security.verifyBad', { message: verified.message })}
          </p>
        )}
        {res.loading && <Loading />}
        {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
        {current && (
          <>
            {current.page.items.length === 0 ? (
              <Empty>{filtered ? t('security.emptyFiltered') : t('security.empty')}</Empty>
            ) : (
              <div className="table-wrap">
                {current.tab === 'audit' && <AuditTable items={current.page.items} />}
                {current.tab === 'intrusion' && <IntrusionTable items={current.page.items} />}
                {current.tab === 'anomaly' && <AnomalyTable items={current.page.items} />}
              </div>
            )}
            <nav className="row pager" aria-label={t('security.pagination')}>
              <button type="button" className="btn btn-secondary" onClick={pager.prev} disabled={!pager.hasPrev || res.loading}>
                {t('security.prev')}
              </button>
              <span>{t('security.page', { page: pager.page })}</span>
              <button
                type="button"
                className="btn btn-secondary"
                onClick={() => current.page.next_cursor && pager.next(current.page.next_cursor)}
                disabled={!current.page.next_cursor || res.loading}
              >
                {t('security.next')}
              </button>
            </nav>
          </>
        )}
      </div>
    </section>
  );
}
