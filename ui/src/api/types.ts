// Shapes of the app API. Every type here is generated from the daemon's Rust types
// (./generated, by flm-proxy's `ui_api::ts` test, which fails when they are stale); this
// file only gives them the app's names. Do not declare API shapes by hand here: change
// the Rust type and run `FLM_UPDATE_TS=1 cargo test -p flm-proxy --lib generated_typescript`.
import type {
  AllowEntryView,
  AppEvent,
  AuditParams,
  DashboardView,
  EventParams,
  HistoryView,
  JsonValue,
  SampleView,
  SessionView,
  SettingView,
  UsageReport,
} from './generated';

export type * from './generated';

export type Session = SessionView;
export type Dashboard = DashboardView;
export type Setting = SettingView;
export type AllowEntry = AllowEntryView;
export type Usage = UsageReport;
export type HealthSample = SampleView;
export type HealthHistory = HistoryView;

/** Kinds of the live event stream (`event:` of `GET /api/v1/events`). */
export type EventKind = AppEvent['kind'];
/** The `data:` of an event of kind `K`. */
export type EventData<K extends EventKind> = Extract<AppEvent, { kind: K }>['data'];

/**
 * A policy document as the app edits it: a JSON object. The server may answer any JSON
 * value (a string holding the stored text when it is not JSON, see `PolicyView.problem`);
 * `asPolicyDoc` narrows.
 */
export type PolicyDoc = Record<string, unknown>;

export function asPolicyDoc(v: JsonValue | null | undefined): PolicyDoc | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : null;
}

/** Filters of the audit, intrusion and anomaly lists (the query of each endpoint). */
export type EventFilters = AuditParams & EventParams;
