// The setup wizard (/setup): publish FLM to a LAN or the internet. Welcome → 1 pre-check
// → 2 server → 3 security → 4 firewall → complete. Every step works alone (?step=…),
// so one step can be redone without the others. Rules live in state/wizard.ts; the
// daemon validates and generates (POST /api/v1/setup/firewall).
import { useEffect, useId, useMemo, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { api as appApi, ApiError, type Api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import { FIREWALL_TARGETS, setupApi, type FirewallScript, type FirewallTarget } from '../api/setup';
import { ConfirmDialog, CopyButton, ErrorBox, Loading } from '../components/common';
import { asPolicyDoc } from '../api/types';
import { saveText } from '../state/download';
import { START_MODES } from '../state/routes';
import {
  allowListOf, badges, firewallField, nextStep, onlyPrivate, parseAllow, parsePorts, precheck, preselectTarget,
  PROBLEM_STEP, proxyPorts, stepOf, STEPS, usableUrls, type Problem, type Step,
} from '../state/wizard';
import { PolicyEditor } from './PolicyEditor';
import '../styles/wizard.css';

type Go = (s: Step) => void;

function StepNav({ step, go }: { step: Step; go: Go }) {
  const { t } = useTranslation();
  return (
    <nav aria-label={t('setupWizard.stepsLabel')}>
      <ol className="wizard-steps">
        {STEPS.map((s, i) => (
          <li key={s}>
            <button type="button" className={s === step ? 'wizard-step current' : 'wizard-step'} aria-current={s === step ? 'step' : undefined} onClick={() => go(s)}>
              {i > 0 && i < STEPS.length - 1 && (
                <span className="wizard-step-no" aria-hidden="true">
                  {i}
                </span>
              )}{' '}
              {t(`setupWizard.steps.${s}`)}
            </button>
          </li>
        ))}
      </ol>
    </nav>
  );
}

function NextButton({ step, go, label }: { step: Step; go: Go; label?: string }) {
  const { t } = useTranslation();
  return (
    <button type="button" className="btn btn-primary" onClick={() => go(nextStep(step))}>
      {label ?? t('setupWizard.next')}
    </button>
  );
}

function Welcome({ go }: { go: Go }) {
  const { t } = useTranslation();
  return (
    <section className="card" aria-labelledby="wz-welcome-h">
      <h2 id="wz-welcome-h">{t('setupWizard.welcome.title')}</h2>
      <p>{t('setupWizard.welcome.body')}</p>
      <ol>
        <li>{t('setupWizard.welcome.items.precheck')}</li>
        <li>{t('setupWizard.welcome.items.server')}</li>
        <li>{t('setupWizard.welcome.items.security')}</li>
        <li>{t('setupWizard.welcome.items.firewall')}</li>
      </ol>
      <p className="muted">{t('setupWizard.welcome.redo')}</p>
      <NextButton step="welcome" go={go} label={t('setupWizard.welcome.start')} />
    </section>
  );
}

export function PrecheckStep({ client, go }: { client: Api; go: Go }) {
  const { t } = useTranslation();
  const res = useResource(async () => {
    const [d, k, p] = await Promise.all([client.dashboard(), client.keys(), client.policy()]);
    return precheck(d.proxy, k.keys, asPolicyDoc(p.policy));
  }, [client], ['proxy', 'keys', 'policy']);
  const checks: { id: string; problems: Problem[] }[] = [
    { id: 'server', problems: ['proxy_stopped', 'loopback_only', 'no_https'] },
    { id: 'key', problems: ['no_key'] },
    { id: 'allowList', problems: ['no_allow_list'] },
    { id: 'rateLimit', problems: ['no_rate_limit'] },
  ];
  return (
    <section className="card" aria-labelledby="wz-pre-h">
      <h2 id="wz-pre-h">{t('setupWizard.precheck.title')}</h2>
      <p>{t('setupWizard.precheck.body')}</p>
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {res.data && (
        <ul className="plain wizard-checks">
          {checks.map((c) => {
            const found = c.problems.filter((p) => res.data?.includes(p));
            return (
              <li key={c.id} className={found.length ? 'alert alert-warning' : 'alert alert-success'}>
                <p className="alert-title">
                  {t(`setupWizard.precheck.checks.${c.id}`)}: {found.length ? t('setupWizard.precheck.needsWork') : t('setupWizard.precheck.ok')}
                </p>
                {found.map((p) => (
                  <p key={p}>
                    {t(`setupWizard.precheck.problems.${p}`)}{' '}
                    <button type="button" className="btn btn-secondary btn-small" onClick={() => go(PROBLEM_STEP[p])}>
                      {t('setupWizard.precheck.fixIn', { step: t(`setupWizard.steps.${PROBLEM_STEP[p]}`) })}
                    </button>
                  </p>
                ))}
              </li>
            );
          })}
        </ul>
      )}
      <div className="row">
        <button type="button" className="btn btn-secondary" onClick={res.reload}>
          {t('setupWizard.precheck.again')}
        </button>
        <NextButton step="precheck" go={go} />
      </div>
    </section>
  );
}

export function ServerStep({ client, go }: { client: Api; go: Go }) {
  const { t } = useTranslation();
  const uid = useId();
  const dash = useResource(() => client.dashboard(), [client], ['proxy']);
  const action = useAction();
  const [mode, setMode] = useState<string>('packaged-ca');
  const [reach, setReach] = useState<'network' | 'local'>('network');
  const [port, setPort] = useState('');
  const [confirm, setConfirm] = useState(false);
  const [done, setDone] = useState(false);
  const running = dash.data?.proxy.running ?? false;
  const portBad = port.trim() !== '' && parsePorts(port).ports.length !== 1;

  const start = async () => {
    const req = { mode, listen: reach === 'network' ? '0.0.0.0' : '127.0.0.1', ...(port.trim() ? { port: Number(port.trim()) } : {}) };
    const r = await action.run(async () => {
      if (running) await client.stopProxy();
      return client.startProxy(req);
    });
    setConfirm(false);
    if (r !== undefined) {
      setDone(true);
      dash.reload();
    }
  };
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (portBad) return;
    if (running) setConfirm(true);
    else void start();
  };
  const p = dash.data?.proxy;
  return (
    <section className="card" aria-labelledby="wz-server-h">
      <h2 id="wz-server-h">{t('setupWizard.server.title')}</h2>
      <p>{t('setupWizard.server.body')}</p>
      {dash.error && <ErrorBox error={dash.error} onRetry={dash.reload} />}
      {p && (
        <p className="muted" data-testid="wz-proxy-state">
          {p.running
            ? t('setupWizard.server.current', { mode: p.mode ?? '—', listen: p.listen ?? '—', port: p.port ?? '—', https: p.https_port ?? '—' })
            : t('setupWizard.server.stopped')}
        </p>
      )}
      <form onSubmit={submit}>
        <fieldset className="field">
          <legend>{t('setupWizard.server.mode')}</legend>
          {START_MODES.map((m) => (
            <div className="wizard-choice" key={m}>
              <input type="radio" id={`${uid}-mode-${m}`} name={`${uid}-mode`} value={m} checked={mode === m} onChange={() => setMode(m)} aria-describedby={`${uid}-mode-${m}-help`} />
              <label htmlFor={`${uid}-mode-${m}`}>{t(`dashboard.proxy.modes.${m}`)}</label>
              <p id={`${uid}-mode-${m}-help`} className="muted small">
                {t(`setupWizard.server.modeHelp.${m}`)}
              </p>
            </div>
          ))}
        </fieldset>
        <div className="alert alert-info">
          <p>{t('setupWizard.server.acme')}</p>
          <pre className="code-block small">flm proxy start --mode https-acme --acme-domain example.com --acme-email you@example.com --bind 0.0.0.0</pre>
          <p>{t('setupWizard.server.portForward')}</p>
        </div>
        <fieldset className="field">
          <legend>{t('setupWizard.server.reach')}</legend>
          {(['network', 'local'] as const).map((r) => (
            <div className="wizard-choice" key={r}>
              <input type="radio" id={`${uid}-reach-${r}`} name={`${uid}-reach`} value={r} checked={reach === r} onChange={() => setReach(r)} />
              <label htmlFor={`${uid}-reach-${r}`}>{t(`setupWizard.server.reachOptions.${r}`)}</label>
            </div>
          ))}
        </fieldset>
        <div className="field">
          <label htmlFor={`${uid}-port`}>{t('setupWizard.server.port')}</label>
          <input
            id={`${uid}-port`}
            className="input narrow"
            inputMode="numeric"
            value={port}
            placeholder={p?.port ? String(p.port) : t('dashboard.proxy.portDefault')}
            onChange={(e) => setPort(e.target.value)}
            aria-invalid={portBad}
            aria-describedby={portBad ? `${uid}-port-err` : `${uid}-port-help`}
          />
          <p id={`${uid}-port-help`} className="muted small">
            {t('setupWizard.server.portHelp')}
          </p>
          {portBad && (
            <p id={`${uid}-port-err`} className="error-text small">
              {t('dashboard.proxy.portInvalid')}
            </p>
          )}
        </div>
        <div className="row">
          <button type="submit" className="btn btn-primary" disabled={action.busy || portBad}>
            {action.busy ? t('common.working') : running ? t('setupWizard.server.restart') : t('setupWizard.server.start')}
          </button>
          <NextButton step="server" go={go} label={t('setupWizard.skipOrNext')} />
        </div>
      </form>
      {action.error && !confirm && <ErrorBox error={action.error} />}
      {done && !action.error && (
        <p className="alert alert-success" role="status">
          {t('setupWizard.server.started')}
        </p>
      )}
      {confirm && (
        <ConfirmDialog
          title={t('setupWizard.server.restartTitle')}
          message={t('setupWizard.server.restartMessage')}
          confirmLabel={t('setupWizard.server.restart')}
          busy={action.busy}
          error={action.error}
          onConfirm={() => void start()}
          onCancel={() => {
            action.clear();
            setConfirm(false);
          }}
        />
      )}
    </section>
  );
}

export function SecurityStep({ client, go, secret, onSecret }: { client: Api; go: Go; secret: string | null; onSecret: (s: string) => void }) {
  const { t } = useTranslation();
  const uid = useId();
  const policy = useResource(() => client.policy(), [client], ['policy']);
  const action = useAction();
  const [label, setLabel] = useState(() => t('setupWizard.security.defaultLabel'));
  const create = async (e: React.FormEvent) => {
    e.preventDefault();
    const r = await action.run(() => client.createKey(label.trim()));
    if (r) onSecret(r.secret);
  };
  const allow = allowListOf(asPolicyDoc(policy.data?.policy));
  return (
    <section className="card" aria-labelledby="wz-sec-h">
      <h2 id="wz-sec-h">{t('setupWizard.security.title')}</h2>
      <p>{t('setupWizard.security.body')}</p>
      <h3>{t('setupWizard.security.keyTitle')}</h3>
      <form className="row" onSubmit={(e) => void create(e)}>
        <div className="grow">
          <label htmlFor={`${uid}-label`}>{t('setupWizard.security.keyLabel')}</label>
          <input id={`${uid}-label`} className="input" value={label} onChange={(e) => setLabel(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-primary align-end" disabled={action.busy || label.trim() === ''}>
          {t('setupWizard.security.createKey')}
        </button>
      </form>
      {action.error && <ErrorBox error={action.error} />}
      {secret && (
        <div className="alert alert-warning">
          <p className="alert-title">{t('setupWizard.security.keyOnce')}</p>
          <label htmlFor={`${uid}-secret`}>{t('setupWizard.security.newKey')}</label>
          <div className="row">
            <input id={`${uid}-secret`} className="input mono grow" readOnly value={secret} data-testid="wizard-key-secret" />
            <CopyButton text={secret} label={t('setupWizard.security.newKey')} />
          </div>
        </div>
      )}
      <h3>{t('setupWizard.security.policyTitle')}</h3>
      <p className="muted">{t('setupWizard.security.policyHelp')}</p>
      {policy.loading && !policy.data && <Loading />}
      {policy.error && <ErrorBox error={policy.error} onRetry={policy.reload} />}
      {onlyPrivate(allow) && (
        <p className="alert alert-warning" role="status" data-testid="private-only">
          {t('setupWizard.security.privateOnly')}
        </p>
      )}
      {policy.data && (
        <PolicyEditor
          key={policy.data.updated_at ?? 'none'}
          doc={asPolicyDoc(policy.data.policy) ?? {}}
          onSave={async (doc) => {
            await client.setPolicy(doc);
            policy.reload();
          }}
        />
      )}
      <div className="row">
        <NextButton step="security" go={go} />
      </div>
    </section>
  );
}

function runHint(s: FirewallScript): string {
  return s.shell === 'sh' ? `sudo sh ${s.filename}` : `powershell -ExecutionPolicy Bypass -File .\\${s.filename}`;
}

export function FirewallStep({ client, go, applied, onApplied }: { client: Api; go: Go; applied: boolean; onApplied: (v: boolean) => void }) {
  const { t } = useTranslation();
  const uid = useId();
  const setup = useMemo(() => setupApi(client), [client]);
  const base = useResource(async () => {
    const [platform, dash, policy] = await Promise.all([setup.platform(), client.dashboard(), client.policy()]);
    return { platform, dash, policy };
  }, [setup, client]);
  const [target, setTarget] = useState<FirewallTarget | null>(null);
  const [portsText, setPortsText] = useState<string | null>(null);
  const [allowText, setAllowText] = useState<string | null>(null);
  const [result, setResult] = useState<FirewallScript | null>(null);
  const [error, setError] = useState<ApiError | null>(null);

  const d = base.data;
  const chosen = target ?? preselectTarget(d?.platform ?? null);
  const portsValue = portsText ?? (d ? proxyPorts(d.dash.proxy).join(', ') : '');
  const allowValue = allowText ?? (d ? allowListOf(asPolicyDoc(d.policy.policy)).join('\n') : '');
  const ports = parsePorts(portsValue);
  const allow = parseAllow(allowValue);
  const localPortsBad = ports.invalid.length > 0 || ports.ports.length === 0;
  const localAllowBad = allow.invalid.length > 0;
  const request = d && !localPortsBad && !localAllowBad ? JSON.stringify({ target: chosen, ports: ports.ports, allow: allow.entries }) : null;

  useEffect(() => {
    if (request === null) return;
    let live = true;
    const timer = setTimeout(() => {
      setup.firewall(JSON.parse(request) as Parameters<typeof setup.firewall>[0]).then(
        (r) => {
          if (!live) return;
          setResult(r);
          setError(null);
        },
        (e: unknown) => {
          if (!live) return;
          setError(e instanceof ApiError ? e : new ApiError(0, 'network_error', String(e), null));
        },
      );
    }, 250);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [request, setup]);

  const serverErrs = (f: 'ports' | 'allow' | 'target') => (error?.fields ?? []).filter((x) => firewallField(x.path) === f);
  const portsErr = localPortsBad ? [t('setupWizard.firewall.portsInvalid', { list: ports.invalid.join(', ') || '—' })] : serverErrs('ports').map((f) => f.message);
  const allowErr = localAllowBad ? [t('setupWizard.firewall.allowInvalid', { list: allow.invalid.join(', ') })] : serverErrs('allow').map((f) => f.message);
  const shown = request !== null && error === null ? result : null;
  const found = d?.platform.firewalls.find((f) => f.target === chosen)?.available ?? false;

  return (
    <section className="card" aria-labelledby="wz-fw-h">
      <h2 id="wz-fw-h">{t('setupWizard.firewall.title')}</h2>
      <p>{t('setupWizard.firewall.body')}</p>
      <p className="alert alert-info">{t('setupWizard.firewall.desktopNote')}</p>
      {base.loading && !d && <Loading />}
      {base.error && <ErrorBox error={base.error} onRetry={base.reload} />}
      {d && (
        <>
          <p className="muted">{t('setupWizard.firewall.detected', { os: d.platform.os, arch: d.platform.arch })}</p>
          <div className="filters">
            <div>
              <label htmlFor={`${uid}-target`}>{t('setupWizard.firewall.target')}</label>
              <select id={`${uid}-target`} className="input" value={chosen} onChange={(e) => setTarget(e.target.value as FirewallTarget)} aria-describedby={`${uid}-target-help`}>
                {FIREWALL_TARGETS.map((f) => (
                  <option key={f} value={f}>
                    {t(`setupWizard.firewall.targets.${f}`)}
                    {d.platform.firewalls.find((x) => x.target === f)?.available ? ` — ${t('setupWizard.firewall.found')}` : ''}
                  </option>
                ))}
              </select>
              <p id={`${uid}-target-help`} className="muted small">
                {found ? t('setupWizard.firewall.foundHelp') : t('setupWizard.firewall.notFoundHelp')}
              </p>
            </div>
            <div>
              <label htmlFor={`${uid}-ports`}>{t('setupWizard.firewall.ports')}</label>
              <input
                id={`${uid}-ports`}
                className="input"
                value={portsValue}
                onChange={(e) => setPortsText(e.target.value)}
                aria-invalid={portsErr.length > 0}
                aria-describedby={`${uid}-ports-help${portsErr.length ? ` ${uid}-ports-err` : ''}`}
              />
              <p id={`${uid}-ports-help`} className="muted small">
                {t('setupWizard.firewall.portsHelp')}
              </p>
              {portsErr.length > 0 && (
                <ul id={`${uid}-ports-err`} className="field-errors">
                  {portsErr.map((m) => (
                    <li key={m}>{m}</li>
                  ))}
                </ul>
              )}
            </div>
            <div className="grow">
              <label htmlFor={`${uid}-allow`}>{t('setupWizard.firewall.allow')}</label>
              <textarea
                id={`${uid}-allow`}
                className="input mono"
                rows={4}
                value={allowValue}
                onChange={(e) => setAllowText(e.target.value)}
                aria-invalid={allowErr.length > 0}
                aria-describedby={`${uid}-allow-help${allowErr.length ? ` ${uid}-allow-err` : ''}`}
              />
              <p id={`${uid}-allow-help`} className="muted small">
                {t('setupWizard.firewall.allowHelp')}
              </p>
              {allowErr.length > 0 && (
                <ul id={`${uid}-allow-err`} className="field-errors">
                  {allowErr.map((m) => (
                    <li key={m}>{m}</li>
                  ))}
                </ul>
              )}
            </div>
          </div>
          {error && error.fields.length === 0 && <ErrorBox error={error} />}
          {shown && (
            <section className="wizard-preview" aria-labelledby={`${uid}-preview-h`}>
              <h3 id={`${uid}-preview-h`}>{t('setupWizard.firewall.preview')}</h3>
              <dl className="kv">
                <div>
                  <dt>{t('setupWizard.firewall.os')}</dt>
                  <dd>{d.platform.os}</dd>
                </div>
                <div>
                  <dt>{t('setupWizard.firewall.ports')}</dt>
                  <dd>{shown.ports.join(', ')}</dd>
                </div>
                <div>
                  <dt>{t('setupWizard.firewall.sources')}</dt>
                  <dd>{shown.allow.length ? shown.allow.join(', ') : t('setupWizard.firewall.anywhere')}</dd>
                </div>
                <div>
                  <dt>{t('setupWizard.firewall.shell')}</dt>
                  <dd>{shown.shell === 'sh' ? 'sh' : 'PowerShell'}</dd>
                </div>
              </dl>
              {shown.warnings.map((w) => (
                <p key={w.code} className="alert alert-warning">
                  {t(`setupWizard.firewall.warnings.${w.code}`, { defaultValue: w.message })}
                </p>
              ))}
              <label htmlFor={`${uid}-script`}>{t('setupWizard.firewall.script', { file: shown.filename })}</label>
              <textarea id={`${uid}-script`} className="input mono wizard-script" readOnly rows={14} value={shown.script} />
              <div className="row">
                <CopyButton text={shown.script} label={shown.filename} />
                <button type="button" className="btn btn-secondary btn-small" onClick={() => saveText(shown.filename, shown.script)}>
                  {t('setupWizard.firewall.save', { file: shown.filename })}
                </button>
              </div>
              <p>
                {t('setupWizard.firewall.runIt')} <code>{runHint(shown)}</code>
              </p>
              <details>
                <summary>{t('setupWizard.firewall.rollbackTitle')}</summary>
                <p className="muted small">{t('setupWizard.firewall.rollbackHelp')}</p>
                <label htmlFor={`${uid}-rollback`}>{t('setupWizard.firewall.script', { file: shown.rollback_filename })}</label>
                <textarea id={`${uid}-rollback`} className="input mono wizard-script" readOnly rows={8} value={shown.rollback} />
              </details>
              <div className="row">
                <button type="button" className="btn btn-secondary btn-small" onClick={() => saveText(shown.rollback_filename, shown.rollback)}>
                  {t('setupWizard.firewall.saveRollback', { file: shown.rollback_filename })}
                </button>
                <CopyButton text={shown.rollback} label={shown.rollback_filename} />
              </div>
            </section>
          )}
          <div className="checkbox field">
            <input type="checkbox" id={`${uid}-applied`} checked={applied} onChange={(e) => onApplied(e.target.checked)} aria-describedby={`${uid}-applied-help`} />
            <label htmlFor={`${uid}-applied`}>{t('setupWizard.firewall.applied')}</label>
          </div>
          <p id={`${uid}-applied-help`} className="muted small">
            {t('setupWizard.firewall.appliedHelp')}
          </p>
        </>
      )}
      <div className="row">
        <NextButton step="firewall" go={go} />
      </div>
    </section>
  );
}

export function CompleteStep({ client, secret, applied }: { client: Api; secret: string | null; applied: boolean }) {
  const { t } = useTranslation();
  const uid = useId();
  const res = useResource(async () => {
    const [d, p] = await Promise.all([client.dashboard(), client.policy()]);
    return { d, p };
  }, [client], ['proxy', 'policy']);
  const b = res.data ? badges(res.data.d, asPolicyDoc(res.data.p.policy), applied) : null;
  const urls = res.data ? usableUrls(res.data.d.endpoints) : [];
  return (
    <section className="card" aria-labelledby="wz-done-h">
      <h2 id="wz-done-h">{t('setupWizard.complete.title')}</h2>
      {res.loading && !res.data && <Loading />}
      {res.error && <ErrorBox error={res.error} onRetry={res.reload} />}
      {b && (
        <ul className="plain row" aria-label={t('setupWizard.complete.badges')}>
          {(['server', 'allowList', 'firewall'] as const).map((k) => (
            <li key={k} className={b[k] ? 'badge badge-running' : 'badge badge-stopped'}>
              {t(`setupWizard.complete.badge.${k}`)}: {b[k] ? t('setupWizard.complete.yes') : t('setupWizard.complete.no')}
            </li>
          ))}
        </ul>
      )}
      <h3>{t('setupWizard.complete.urls')}</h3>
      {res.data && urls.length === 0 && <p className="muted">{t('dashboard.endpoints.empty')}</p>}
      <ul className="plain endpoints">
        {urls.map((ep) => (
          <li key={ep.scope + ep.url}>
            <div className="small muted">{t(`dashboard.endpoints.${ep.scope}`)}</div>
            <div className="row">
              <code className="grow">{ep.url}</code>
              <CopyButton text={ep.url} label={t(`dashboard.endpoints.${ep.scope}`)} />
            </div>
          </li>
        ))}
      </ul>
      <h3>{t('setupWizard.complete.key')}</h3>
      {secret ? (
        <>
          <label htmlFor={`${uid}-key`}>{t('setupWizard.security.newKey')}</label>
          <div className="row">
            <input id={`${uid}-key`} className="input mono grow" readOnly value={secret} />
            <CopyButton text={secret} label={t('setupWizard.security.newKey')} />
          </div>
        </>
      ) : (
        <p className="muted">{t('setupWizard.complete.noKey')}</p>
      )}
      <div className="row">
        <Link className="btn btn-primary" to="/">
          {t('setupWizard.complete.dashboard')}
        </Link>
      </div>
    </section>
  );
}

export default function SetupWizard({ client = appApi }: { client?: Api }) {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const step = stepOf(params.get('step'));
  // The new key stays in memory only (never in storage), until the wizard is left.
  const [secret, setSecret] = useState<string | null>(null);
  const [applied, setApplied] = useState(false);
  const go: Go = (s) => {
    setParams(s === 'welcome' ? {} : { step: s });
    window.scrollTo?.(0, 0);
  };
  return (
    <section className="wizard">
      <h1>{t('setupWizard.title')}</h1>
      <StepNav step={step} go={go} />
      {step === 'welcome' && <Welcome go={go} />}
      {step === 'precheck' && <PrecheckStep client={client} go={go} />}
      {step === 'server' && <ServerStep client={client} go={go} />}
      {step === 'security' && <SecurityStep client={client} go={go} secret={secret} onSecret={setSecret} />}
      {step === 'firewall' && <FirewallStep client={client} go={go} applied={applied} onApplied={setApplied} />}
      {step === 'complete' && <CompleteStep client={client} secret={secret} applied={applied} />}
    </section>
  );
}
