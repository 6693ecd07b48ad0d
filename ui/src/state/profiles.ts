// Model profiles and prompt templates: form pre-checks and display helpers for the two
// screens. The daemon validates again (names, ranges, lengths) and its answer wins.
import type { ProfileView, PromptScopeKind, PromptView } from '../api/types';

/** The model id prefix clients use for a profile: `profile/<label>`. */
export const PROFILE_PREFIX = 'profile/';

const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Why a profile form cannot be sent yet (an i18n key), or null. */
export type ProfileProblem = 'labelRequired' | 'labelInvalid' | 'modelRequired' | 'paramsJson' | 'paramsObject';

export interface ProfileForm {
  id: string | null;
  label: string;
  model: string;
  engine: string;
  params: string;
}

export const EMPTY_PROFILE: ProfileForm = { id: null, label: '', model: '', engine: '', params: '{\n  "temperature": 0.7,\n  "max_tokens": 512\n}' };

/** The form for editing `p`. */
export function profileForm(p: ProfileView): ProfileForm {
  return {
    id: p.id,
    label: p.label,
    model: p.target,
    engine: '',
    params: JSON.stringify(p.parameters, null, 2),
  };
}

/** Parses the parameters text: a JSON object, or the problem. Empty text = no parameters. */
export function parseParams(text: string): { ok: true; value: Record<string, unknown> } | { ok: false; problem: 'paramsJson' | 'paramsObject' } {
  if (text.trim() === '') return { ok: true, value: {} };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'paramsJson' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, problem: 'paramsObject' };
  return { ok: true, value: v as Record<string, unknown> };
}

/** Every problem of the form, by field. */
export function profileProblems(f: ProfileForm): Partial<Record<'label' | 'model' | 'parameters', ProfileProblem>> {
  const out: Partial<Record<'label' | 'model' | 'parameters', ProfileProblem>> = {};
  const label = f.label.trim();
  if (!label) out.label = 'labelRequired';
  else if (!LABEL.test(label)) out.label = 'labelInvalid';
  if (!f.model.trim()) out.model = 'modelRequired';
  const p = parseParams(f.params);
  if (!p.ok) out.parameters = p.problem;
  return out;
}

/** The request body of a valid form. */
export function profileRequest(f: ProfileForm) {
  const p = parseParams(f.params);
  return {
    id: f.id,
    engine_id: f.engine.trim() || null,
    model: f.model.trim(),
    label: f.label.trim(),
    parameters: p.ok ? p.value : {},
  };
}

/** Profiles whose label, target or engine contains `query` (case-insensitive). */
export function filterProfiles(list: readonly ProfileView[], query: string): ProfileView[] {
  const q = query.trim().toLowerCase();
  if (!q) return [...list];
  return list.filter((p) => [p.label, p.target, p.engine_id, p.model].some((s) => s.toLowerCase().includes(q)));
}

/** `{"temperature":0.7}` → `temperature=0.7`, one per parameter, for the table. */
export function paramsSummary(params: Record<string, unknown>): string {
  const parts = Object.entries(params).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return parts.length ? parts.join(', ') : '—';
}

/** What a client sends to use the profile (shown as an example). */
export function exampleRequest(label: string): string {
  return JSON.stringify({ model: `${PROFILE_PREFIX}${label.trim() || '…'}`, messages: [{ role: 'user', content: 'Hello' }] }, null, 2);
}

export interface PromptForm {
  scope: PromptScopeKind;
  target: string;
  text: string;
}

export const EMPTY_PROMPT: PromptForm = { scope: 'default', target: '', text: '' };

/** The form for editing `p`. */
export function promptForm(p: PromptView): PromptForm {
  return { scope: p.scope, target: p.target ?? '', text: p.text };
}

export type PromptProblem = 'targetRequired' | 'textRequired' | 'textTooLong';

/** Every problem of the form, by field. */
export function promptProblems(f: PromptForm, maxChars: number): Partial<Record<'target' | 'text', PromptProblem>> {
  const out: Partial<Record<'target' | 'text', PromptProblem>> = {};
  if (f.scope !== 'default' && !f.target.trim()) out.target = 'targetRequired';
  if (!f.text.trim()) out.text = 'textRequired';
  else if (charCount(f.text) > maxChars) out.text = 'textTooLong';
  return out;
}

/** Characters as the daemon counts them (Unicode scalar values, not UTF-16 units). */
export function charCount(text: string): number {
  return Array.from(text).length;
}

/** The request body of a valid form. */
export function promptRequest(f: PromptForm) {
  return { scope: f.scope, target: f.scope === 'default' ? null : f.target.trim(), text: f.text };
}

/** The first line of a template, cut to `max` characters with an ellipsis. */
export function firstLine(text: string, max = 60): string {
  const lines = text.split('\n');
  const line = lines[0] ?? '';
  const chars = Array.from(line);
  if (chars.length > max) return `${chars.slice(0, max).join('')}…`;
  return lines.length > 1 ? `${line}…` : line;
}

/** Default first, then model templates, then key templates (each by target). */
export function sortPrompts(list: readonly PromptView[]): PromptView[] {
  const rank: Record<PromptScopeKind, number> = { default: 0, model: 1, key: 2 };
  return [...list].sort((a, b) => rank[a.scope] - rank[b.scope] || (a.target ?? '').localeCompare(b.target ?? ''));
}
