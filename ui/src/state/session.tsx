import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { api, ApiError } from '../api/client';
import type { Language, Session, Theme } from '../api/types';
import i18n, { pickLanguage } from '../i18n';

const THEME_KEY = 'flm-theme'; // the only thing the app keeps in localStorage

type Phase = 'loading' | 'ready' | 'unauthorized' | 'error';

interface SessionState {
  phase: Phase;
  session: Session | null;
  error: ApiError | null;
  theme: Theme;
  setTheme: (t: Theme) => void;
  language: Language;
  setLanguage: (l: Language) => Promise<void>;
  languageError: ApiError | null;
  retry: () => void;
  logout: () => Promise<void>;
}

const Ctx = createContext<SessionState | null>(null);

function readTheme(): Theme | null {
  try {
    const v = localStorage.getItem(THEME_KEY);
    return v === 'light' || v === 'dark' || v === 'system' ? v : null;
  } catch {
    return null;
  }
}

function writeTheme(t: Theme): void {
  try {
    localStorage.setItem(THEME_KEY, t);
  } catch {
    /* private mode: the theme just isn't cached */
  }
}

function applyTheme(t: Theme): void {
  const dark = t === 'dark' || (t === 'system' && typeof matchMedia !== 'undefined' && matchMedia('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const [phase, setPhase] = useState<Phase>('loading');
  const [session, setSession] = useState<Session | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [theme, setThemeState] = useState<Theme>(() => readTheme() ?? 'system');
  const [language, setLanguageState] = useState<Language>(() => (i18n.language === 'en' ? 'en' : 'ja'));
  const [languageError, setLanguageError] = useState<ApiError | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => api.onUnauthorized(() => setPhase('unauthorized')), []);

  useEffect(() => {
    let live = true;
    api.session().then(
      (s) => {
        if (!live) return;
        setSession(s);
        const lng = pickLanguage(s.language, navigator.languages ?? [navigator.language]);
        setLanguageState(lng);
        void i18n.changeLanguage(lng);
        // The daemon's `ui.theme` is the truth; localStorage only avoids a flash before it loads.
        if (s.theme === 'light' || s.theme === 'dark' || s.theme === 'system') {
          setThemeState(s.theme);
          writeTheme(s.theme);
        }
        setPhase('ready');
      },
      (e: unknown) => {
        if (!live) return;
        const err = e instanceof ApiError ? e : new ApiError(0, 'network_error', String(e), null);
        setError(err);
        setPhase(err.status === 401 ? 'unauthorized' : 'error');
      },
    );
    return () => {
      live = false;
    };
  }, [attempt]);

  useEffect(() => {
    applyTheme(theme);
    if (theme !== 'system' || typeof matchMedia === 'undefined') return;
    const mq = matchMedia('(prefers-color-scheme: dark)');
    const on = () => applyTheme('system');
    mq.addEventListener('change', on);
    return () => mq.removeEventListener('change', on);
  }, [theme]);

  const setTheme = useCallback((t: Theme) => {
    setThemeState(t);
    writeTheme(t);
    // Persist for other browsers/the desktop window; a failure keeps the local choice.
    api.setConfig('ui.theme', t).catch(() => undefined);
  }, []);

  const setLanguage = useCallback(async (l: Language) => {
    // Switch at once; persisting is best effort and its failure is shown, not fatal.
    setLanguageState(l);
    await i18n.changeLanguage(l);
    setLanguageError(null);
    try {
      await api.setConfig('preferred_language', l);
    } catch (e) {
      setLanguageError(e instanceof ApiError ? e : new ApiError(0, 'network_error', String(e), null));
    }
  }, []);

  const retry = useCallback(() => {
    setPhase('loading');
    setAttempt((n) => n + 1);
  }, []);

  const logout = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      /* already gone: the login screen is right either way */
    }
    setPhase('unauthorized');
  }, []);

  const value = useMemo(
    () => ({ phase, session, error, theme, setTheme, language, setLanguage, languageError, retry, logout }),
    [phase, session, error, theme, setTheme, language, setLanguage, languageError, retry, logout],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useSession(): SessionState {
  const v = useContext(Ctx);
  if (!v) throw new Error('useSession outside SessionProvider');
  return v;
}
