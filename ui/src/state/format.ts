import i18n from '../i18n';

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(i18n.language === 'ja' ? 'ja-JP' : 'en-US');
}

export function fmtNum(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return n.toLocaleString(i18n.language === 'ja' ? 'ja-JP' : 'en-US', { maximumFractionDigits: digits });
}

export function fmtPct(r: number | null | undefined): string {
  if (r === null || r === undefined) return '—';
  return `${fmtNum(r * 100, 1)}%`;
}
