import { Suspense, useState } from 'react';
import { NavLink, Outlet } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { useSession } from '../state/session';
import type { Language, Theme } from '../api/types';
import { ErrorBox, Loading } from './common';
import { AlertToasts } from './AlertToasts';

export const NAV: { to: string; key: string }[] = [
  { to: '/', key: 'sidebar.home' },
  { to: '/api-setup', key: 'sidebar.apiSetup' },
  { to: '/chat/tester', key: 'sidebar.chatTester' },
  { to: '/security/events', key: 'sidebar.securityEvents' },
  { to: '/security/ip-blocklist', key: 'sidebar.ipBlocklist' },
  { to: '/security/ip-whitelist', key: 'sidebar.ipWhitelist' },
  { to: '/usage', key: 'sidebar.usage' },
  { to: '/models/profiles', key: 'sidebar.modelProfiles' },
  { to: '/prompts', key: 'sidebar.promptTemplates' },
  { to: '/models/comparison', key: 'sidebar.modelComparison' },
  { to: '/settings', key: 'sidebar.settings' },
];

export function LanguageSelect({ id }: { id: string }) {
  const { t } = useTranslation();
  const { language, setLanguage } = useSession();
  return (
    <select id={id} className="input" value={language} onChange={(e) => void setLanguage(e.target.value as Language)}>
      <option value="ja">{t('settings.languageJa')}</option>
      <option value="en">{t('settings.languageEn')}</option>
    </select>
  );
}

export function ThemeSelect({ id }: { id: string }) {
  const { t } = useTranslation();
  const { theme, setTheme } = useSession();
  return (
    <select id={id} className="input" value={theme} onChange={(e) => setTheme(e.target.value as Theme)}>
      <option value="system">{t('settings.themeSystem')}</option>
      <option value="light">{t('settings.themeLight')}</option>
      <option value="dark">{t('settings.themeDark')}</option>
    </select>
  );
}

export function Shell() {
  const { t } = useTranslation();
  const { languageError, logout } = useSession();
  const [collapsed, setCollapsed] = useState(false);
  return (
    <div className={collapsed ? 'shell collapsed' : 'shell'}>
      <a className="skip-link" href="#main">
        {t('common.skipToContent')}
      </a>
      <header className="header">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            FLM
          </span>
          <span className="brand-name">{t('app.title')}</span>
        </div>
        <div className="header-controls">
          <label htmlFor="hdr-lang" className="small">
            {t('settings.language')}
          </label>
          <LanguageSelect id="hdr-lang" />
          <label htmlFor="hdr-theme" className="small">
            {t('settings.theme')}
          </label>
          <ThemeSelect id="hdr-theme" />
          <button type="button" className="btn btn-secondary btn-small" onClick={() => void logout()}>
            {t('common.logout')}
          </button>
        </div>
      </header>
      <nav className="sidebar" aria-label={t('sidebar.label')}>
        <button type="button" className="btn btn-secondary btn-small collapse-btn" aria-expanded={!collapsed} onClick={() => setCollapsed((c) => !c)}>
          {collapsed ? t('sidebar.expand') : t('sidebar.collapse')}
        </button>
        {!collapsed && (
          <ul>
            {NAV.map((n) => (
              <li key={n.to}>
                <NavLink to={n.to} end={n.to === '/'}>
                  {t(n.key)}
                </NavLink>
              </li>
            ))}
          </ul>
        )}
      </nav>
      <main id="main" className="main" tabIndex={-1}>
        {languageError && <ErrorBox error={languageError} />}
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </main>
      <AlertToasts />
    </div>
  );
}
