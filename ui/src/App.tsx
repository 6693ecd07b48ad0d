import { lazy } from 'react';
import { BrowserRouter, Route, Routes } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { Shell } from './components/Shell';
import { ErrorBox, Loading } from './components/common';
import { useSession } from './state/session';
import Dashboard from './screens/Dashboard';

const ApiSetup = lazy(() => import('./screens/ApiSetup'));
const ChatTester = lazy(() => import('./screens/ChatTester'));
const SecurityEvents = lazy(() => import('./screens/SecurityEvents'));
const Blocklist = lazy(() => import('./screens/Blocklist'));
const Allowlist = lazy(() => import('./screens/Allowlist'));
const Usage = lazy(() => import('./screens/Usage'));
const ModelComparison = lazy(() => import('./screens/ModelComparison'));
const Settings = lazy(() => import('./screens/Settings'));
const SetupWizard = lazy(() => import('./screens/SetupWizard'));
const AlertSettings = lazy(() => import('./screens/AlertSettings'));
const ModelProfiles = lazy(() => import('./screens/ModelProfiles'));
const PromptTemplates = lazy(() => import('./screens/PromptTemplates'));

function LoginRequired() {
  const { t } = useTranslation();
  return (
    <main className="center-screen" id="main">
      <div className="card">
        <h1>{t('login.title')}</h1>
        <p>{t('login.body')}</p>
        <pre className="code-block">flm ui</pre>
        <p className="muted">{t('login.hint')}</p>
      </div>
    </main>
  );
}

function NotFound() {
  const { t } = useTranslation();
  return (
    <section>
      <h1>{t('notFound.title')}</h1>
      <p>{t('notFound.body')}</p>
    </section>
  );
}

export default function App() {
  const { phase, error, retry } = useSession();
  if (phase === 'loading') {
    return (
      <main className="center-screen" id="main">
        <Loading />
      </main>
    );
  }
  if (phase === 'unauthorized') return <LoginRequired />;
  if (phase === 'error' && error) {
    return (
      <main className="center-screen" id="main">
        <ErrorBox error={error} onRetry={retry} />
      </main>
    );
  }
  return (
    <BrowserRouter>

        <Routes>
          <Route element={<Shell />}>
            <Route index element={<Dashboard />} />
            <Route path="api-setup" element={<ApiSetup />} />
            <Route path="chat/tester" element={<ChatTester />} />
            <Route path="security/events" element={<SecurityEvents />} />
            <Route path="security/ip-blocklist" element={<Blocklist />} />
            <Route path="security/ip-whitelist" element={<Allowlist />} />
            <Route path="usage" element={<Usage />} />
            <Route path="models/profiles" element={<ModelProfiles />} />
            <Route path="prompts" element={<PromptTemplates />} />
            <Route path="models/comparison" element={<ModelComparison />} />
            <Route path="settings" element={<Settings />} />
            <Route path="setup" element={<SetupWizard />} />
            <Route path="settings/alerts" element={<AlertSettings />} />
            <Route path="*" element={<NotFound />} />
          </Route>
        </Routes>

    </BrowserRouter>
  );
}
