// The policy form edits a few well-known keys of the policy document and keeps every
// other key as it was; validation stays on the daemon (its 422 fields are mapped back).
import type { FieldError, PolicyDoc } from '../api/types';

export const PROTECTIONS = ['ip_rate_limit', 'ip_blocklist', 'intrusion_detection', 'anomaly_detection', 'resource_protection'] as const;
export type Protection = (typeof PROTECTIONS)[number];
export type Toggle = 'default' | 'on' | 'off';

export interface PolicyForm {
  allowList: string; // one entry per line
  corsOrigins: string; // one origin per line
  rpm: string; // empty = no access limit
  burst: string;
  protections: Record<Protection, Toggle>;
}

export type FormField = 'allowList' | 'corsOrigins' | 'rpm' | 'burst' | Protection | 'other';

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function strList(v: unknown): string[] {
  return Array.isArray(v) ? v.map((x) => String(x)) : [];
}

export function docToForm(doc: PolicyDoc): PolicyForm {
  const rl = obj(doc.rate_limit);
  const protections = {} as Record<Protection, Toggle>;
  for (const p of PROTECTIONS) {
    const en = obj(doc[p]).enabled;
    protections[p] = en === true ? 'on' : en === false ? 'off' : 'default';
  }
  return {
    allowList: strList(doc.ip_whitelist).join('\n'),
    corsOrigins: strList(obj(doc.cors).allowed_origins).join('\n'),
    rpm: rl.rpm === undefined || rl.rpm === null ? '' : String(rl.rpm),
    burst: rl.burst === undefined || rl.burst === null ? '' : String(rl.burst),
    protections,
  };
}

function lines(s: string): string[] {
  return s
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** A number as typed; text that is not a number is sent as is so the daemon reports it. */
function num(s: string): number | string {
  const v = s.trim();
  return /^-?\d+$/.test(v) ? Number(v) : v;
}

export function formToDoc(form: PolicyForm, base: PolicyDoc): PolicyDoc {
  const doc: PolicyDoc = { ...base };
  doc.ip_whitelist = lines(form.allowList);
  doc.cors = { ...obj(base.cors), allowed_origins: lines(form.corsOrigins) };
  if (form.rpm.trim() === '' && form.burst.trim() === '') {
    delete doc.rate_limit;
  } else {
    const rl: Record<string, unknown> = { ...obj(base.rate_limit), rpm: num(form.rpm) };
    if (form.burst.trim() === '') delete rl.burst;
    else rl.burst = num(form.burst);
    doc.rate_limit = rl;
  }
  for (const p of PROTECTIONS) {
    const section = { ...obj(base[p]) };
    if (form.protections[p] === 'default') delete section.enabled;
    else section.enabled = form.protections[p] === 'on';
    if (Object.keys(section).length === 0) delete doc[p];
    else doc[p] = section;
  }
  return doc;
}

/** Which form field a server field error belongs to (`rate_limit.rpm`, `ip_whitelist[2]`, …). */
export function fieldOf(path: string): FormField {
  if (path.startsWith('ip_whitelist')) return 'allowList';
  if (path.startsWith('cors')) return 'corsOrigins';
  if (path.startsWith('rate_limit.burst')) return 'burst';
  if (path.startsWith('rate_limit')) return 'rpm';
  for (const p of PROTECTIONS) if (path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`)) return p;
  return 'other';
}

export function groupFieldErrors(fields: FieldError[]): Partial<Record<FormField, FieldError[]>> {
  const out: Partial<Record<FormField, FieldError[]>> = {};
  for (const f of fields) {
    const k = fieldOf(f.path);
    (out[k] ??= []).push(f);
  }
  return out;
}
