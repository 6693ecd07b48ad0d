import { useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router-dom';
import { api } from '../api/client';
import { useAction, useResource } from '../api/hooks';
import type { Setting } from '../api/types';
import { ErrorBox, Loading } from '../components/common';
import { LanguageSelect, ThemeSelect } from '../components/Shell';
import { useSession } from '../state/session';

const LOG_CHOICES = ['error', 'warn', 'info', 'debug', 'trace'];

function LogLevel({ setting, onSaved }: { setting: Setting; onSaved: () => void }) {
  const { t } = useTranslation();
  const uid = useId();
  const action = useAction();
  const [value, setValue] = useState(setting.value || setting.default);
  const choices = setting.choices ?? LOG_CHOICES;
  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    if ((await action.run(() => api.setConfig(setting.key, value))) !== undefined) onSaved();
  };
  return (
    <form className="row" onSubmit={(e) => void save(e)}>
      <div>
        <label htmlFor={`${uid}-log`}>{t('settings.logLevel')}</label>
        <select id={`${uid}-log`} className="input" value={value} onChange={(e) => setValue(e.target.value)}>
          {choices.map((c) => (
            <option key={c} value={c}>
              {LOG_CHOICES.includes(c) ? t(`settings.logLevels.${c}`) : c}
            </option>
          ))}
        </select>
      </div>
      <button type="submit" className="btn btn-primary align-end" disabled={action.busy}>
        {t('common.save')}
      </button>
      {action.error && <ErrorBox error={action.error} />}
    </form>
  );
}

export default function Settings() {
  const { t } = useTranslation();
  const { session } = useSession();
  const config = useResource(() => api.config(), [], ['config']);
  const log = config.data?.settings.find((s) => s.key === 'log_level' || s.key.endsWith('.log_level') || s.key === 'log.level');
  return (
    <section>
      <h1>{t('settings.title')}</h1>
      <div className="stack">
        <section className="card" aria-labelledby="set-display">
          <h2 id="set-display">{t('settings.display')}</h2>
          <div className="filters">
            <div>
              <label htmlFor="set-lang">{t('settings.displayLanguage')}</label>
              <LanguageSelect id="set-lang" />
            </div>
            <div>
              <label htmlFor="set-theme">{t('settings.theme')}</label>
              <ThemeSelect id="set-theme" />
            </div>
          </div>
          <p className="muted small">{t('settings.languageHelp')}</p>
        </section>
        <section className="card" aria-labelledby="set-log">
          <h2 id="set-log">{t('settings.logging')}</h2>
          {config.loading && !config.data && <Loading />}
          {config.error && <ErrorBox error={config.error} onRetry={config.reload} />}
          {config.data && (log ? <LogLevel key={log.value} setting={log} onSaved={config.reload} /> : <p className="muted">{t('settings.noLogLevel')}</p>)}
        </section>
        <section className="card" aria-labelledby="set-alerts">
          <h2 id="set-alerts">{t('alertSettings.title')}</h2>
          <p>{t('alertSettings.settingsSummary')}</p>
          <Link to="/settings/alerts">{t('alertSettings.open')}</Link>
        </section>
        {session && (
          <p className="muted small">
            {t('settings.version', { version: session.version })}
          </p>
        )}
      </div>
    </section>
  );
}
