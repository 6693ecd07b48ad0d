// Alert rules (setting `alert_rules`) and the live `alert` event: types and the pure logic
// of the Alert Settings screen and the alert notices. Validation is the daemon's; this
// file only shapes the document and files the daemon's field errors under each rule.
import type { FieldError } from './types';
import type { AlertEvent, AlertEventType, AlertRule, AlertRules, AuditSeverity } from './generated';

export type { AlertEvent, AlertEventType, AlertRule } from './generated';
export type AlertSeverity = AuditSeverity;
/** The `alert_rules` document. */
export type AlertRulesDoc = AlertRules;

// Records, not lists, so that tsc fails when the daemon gains a type or severity the
// screen does not offer; the key order is the order shown.
const EVENT_TYPE_SET: Record<AlertEventType, true> = { intrusion: true, anomaly: true, rate_limit: true, api_error: true, auth_failure: true, ip_blocked: true };
export const ALERT_EVENT_TYPES = Object.keys(EVENT_TYPE_SET) as readonly AlertEventType[];
const SEVERITY_SET: Record<AlertSeverity, true> = { critical: true, high: true, medium: true, low: true };
export const ALERT_SEVERITIES = Object.keys(SEVERITY_SET) as readonly AlertSeverity[];
/** The editable fields of a rule, in form order (also the paths of the daemon's errors). */
export const RULE_FIELDS = ['id', 'eventType', 'severity', 'threshold', 'windowSecs', 'cooldownSecs', 'enabled', 'notifyUI', 'notifyLog'] as const satisfies readonly (keyof AlertRule)[];
export type RuleField = (typeof RULE_FIELDS)[number];

/** A rule being edited: numbers stay text until saved so that the daemon judges them. */
export interface RuleDraft {
  key: number;
  id: string;
  eventType: string;
  severity: string;
  threshold: string;
  windowSecs: string;
  cooldownSecs: string;
  enabled: boolean;
  notifyUI: boolean;
  notifyLog: boolean;
}

let nextKey = 1;

function str(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : fallback;
}

/** Drafts from the stored text (the daemon fills defaults in, so every field is there). */
export function draftsFromSetting(value: string): RuleDraft[] {
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch {
    return [];
  }
  const rules = Array.isArray(doc) ? doc : typeof doc === 'object' && doc !== null ? (doc as { rules?: unknown }).rules : [];
  if (!Array.isArray(rules)) return [];
  return rules.map((r: unknown) => {
    const o = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
    return {
      key: nextKey++,
      id: str(o.id, ''),
      eventType: str(o.eventType, 'intrusion'),
      severity: str(o.severity, 'high'),
      threshold: str(o.threshold, '1'),
      windowSecs: str(o.windowSecs, '60'),
      cooldownSecs: str(o.cooldownSecs, '300'),
      enabled: o.enabled !== false,
      notifyUI: o.notifyUI !== false,
      notifyLog: o.notifyLog === true,
    };
  });
}

/** A new rule with an id not used yet. */
export function newDraft(existing: RuleDraft[]): RuleDraft {
  const ids = new Set(existing.map((d) => d.id));
  let n = existing.length + 1;
  while (ids.has(`rule-${n}`)) n++;
  return {
    key: nextKey++,
    id: `rule-${n}`,
    eventType: 'intrusion',
    severity: 'high',
    threshold: '1',
    windowSecs: '60',
    cooldownSecs: '300',
    enabled: true,
    notifyUI: true,
    notifyLog: false,
  };
}

/** A number field as the daemon should see it: a number when it is one, else the text. */
function num(s: string): number | string {
  const t = s.trim();
  return /^\d+$/.test(t) ? Number(t) : t;
}

/** The text to PUT as the setting's value. */
export function settingFromDrafts(drafts: RuleDraft[]): string {
  return JSON.stringify({
    rules: drafts.map((d) => ({
      id: d.id.trim(),
      eventType: d.eventType,
      severity: d.severity,
      threshold: num(d.threshold),
      windowSecs: num(d.windowSecs),
      cooldownSecs: num(d.cooldownSecs),
      enabled: d.enabled,
      notifyUI: d.notifyUI,
      notifyLog: d.notifyLog,
    })),
  });
}

/** The daemon's errors filed by rule index and field (`rules[2].severity`); the rest
 * (document-level ones) under `general`. */
export interface RuleErrors {
  byRule: Map<number, Partial<Record<RuleField, string[]>>>;
  general: FieldError[];
}

export function groupRuleErrors(fields: FieldError[]): RuleErrors {
  const byRule = new Map<number, Partial<Record<RuleField, string[]>>>();
  const general: FieldError[] = [];
  for (const f of fields) {
    const m = /^rules\[(\d+)\](?:\.(\w+))?$/.exec(f.path);
    const field = m?.[2] as RuleField | undefined;
    if (!m || (field !== undefined && !RULE_FIELDS.includes(field))) {
      general.push(f);
      continue;
    }
    const i = Number(m[1]);
    const entry = byRule.get(i) ?? {};
    const k: RuleField = field ?? 'id';
    entry[k] = [...(entry[k] ?? []), f.message];
    byRule.set(i, entry);
  }
  return { byRule, general };
}

/** Whether `v` is an `alert` event payload. */
export function isAlertEvent(v: unknown): v is AlertEvent {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.rule_id === 'string' && typeof o.event_type === 'string' && typeof o.severity === 'string' && typeof o.count === 'number';
}

/** Notices stay this long, except critical ones, which stay until dismissed. */
export const TOAST_MS = 5000;

export function toastSticky(a: AlertEvent): boolean {
  return a.max_severity === 'critical' || a.severity === 'critical';
}

/** i18n key of an event type (unknown types fall back to the generic label). */
export function eventTypeKey(t: string): string {
  return (ALERT_EVENT_TYPES as readonly string[]).includes(t) ? `alertSettings.eventTypes.${t}` : 'alertSettings.eventTypes.other';
}

/** i18n key of a severity. */
export function severityKey(s: string): string {
  return (ALERT_SEVERITIES as readonly string[]).includes(s) ? `alertSettings.severities.${s}` : 'alertSettings.severities.other';
}
