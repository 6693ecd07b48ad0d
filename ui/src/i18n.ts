import i18n from 'i18next';
import { initReactI18next } from 'react-i18next';
import en from './locales/en.json';
import ja from './locales/ja.json';
import type { Language } from './api/types';

/** First language: the session's stored preference, else the browser's, else Japanese (spec §6). */
export function pickLanguage(stored: Language | null | undefined, browser: readonly string[]): Language {
  if (stored === 'en' || stored === 'ja') return stored;
  for (const l of browser) {
    const base = l.toLowerCase().split('-')[0];
    if (base === 'ja' || base === 'en') return base;
  }
  return 'ja';
}

void i18n.use(initReactI18next).init({
  resources: { en: { translation: en }, ja: { translation: ja } },
  lng: pickLanguage(null, typeof navigator === 'undefined' ? [] : navigator.languages ?? [navigator.language]),
  // Spec §6: selected language → Japanese → English → raw key.
  fallbackLng: ['ja', 'en'],
  interpolation: { escapeValue: false },
  returnNull: false,
});

i18n.on('languageChanged', (lng) => {
  if (typeof document !== 'undefined') document.documentElement.lang = lng;
});

export default i18n;
