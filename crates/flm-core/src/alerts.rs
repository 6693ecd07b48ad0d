//! Alert rules (setting `alert_rules`, spec 60-ui §3.10) and their evaluation.
//!
//! A rule watches one kind of security event and fires when `threshold` events of
//! that kind, at or above the rule's severity, happened within the last `windowSecs`
//! seconds. After firing it stays silent for `cooldownSecs` seconds (events keep being
//! counted, as `suppressed`), so a flood yields one alert per cool-down, not a flood
//! of alerts. Once the cool-down is over the rule fires again as soon as the window
//! holds `threshold` events.
//!
//! The document is `{"rules":[{id, eventType, severity, threshold?, windowSecs?,
//! cooldownSecs?, enabled, notifyUI, notifyLog}]}`. A bare array of rules is accepted
//! too and stored in the object form. Everything here is pure and clock-injected;
//! the daemon feeds events in and delivers the [`Alert`]s.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldProblem;
use crate::security::AuditSeverity;

/// The setting that holds the rules.
pub const SETTING_KEY: &str = "alert_rules";
/// `threshold` when absent: every matching event fires (subject to the cool-down).
pub const DEFAULT_THRESHOLD: u32 = 1;
/// `windowSecs` when absent.
pub const DEFAULT_WINDOW_SECS: u32 = 60;
/// `cooldownSecs` when absent.
pub const DEFAULT_COOLDOWN_SECS: u32 = 300;
/// Largest `threshold` (also bounds the memory of one rule's window).
pub const MAX_THRESHOLD: u32 = 10_000;
/// Largest `windowSecs` and `cooldownSecs`: one day.
pub const MAX_SECS: u32 = 86_400;
/// Most rules in one document.
pub const MAX_RULES: usize = 100;
/// Longest rule id.
pub const MAX_ID_LEN: usize = 64;

/// The rules in force when `alert_rules` was never set (the setting's default).
/// Kept as text because a setting's default is text; a test checks it parses to
/// valid rules.
pub const DEFAULT_RULES_JSON: &str = r#"{"rules":[{"id":"intrusion","eventType":"intrusion","severity":"high","threshold":1,"windowSecs":60,"cooldownSecs":300,"enabled":true,"notifyUI":true,"notifyLog":true},{"id":"ip-blocked","eventType":"ip_blocked","severity":"high","threshold":1,"windowSecs":60,"cooldownSecs":300,"enabled":true,"notifyUI":true,"notifyLog":true},{"id":"auth-failures","eventType":"auth_failure","severity":"medium","threshold":10,"windowSecs":60,"cooldownSecs":300,"enabled":true,"notifyUI":true,"notifyLog":false},{"id":"anomaly","eventType":"anomaly","severity":"medium","threshold":5,"windowSecs":60,"cooldownSecs":300,"enabled":true,"notifyUI":true,"notifyLog":false},{"id":"server-errors","eventType":"api_error","severity":"high","threshold":10,"windowSecs":60,"cooldownSecs":300,"enabled":true,"notifyUI":true,"notifyLog":false}]}"#;

/// The kinds of security events a rule can watch.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventType {
    /// An intrusion attempt (`intrusion_attempts`; severity high).
    Intrusion,
    /// An anomaly (`anomaly_detections`; severity medium).
    Anomaly,
    /// A request refused by an access limit (audit `rate_limit`).
    RateLimit,
    /// A server error answered to a client (audit row with status ≥ 500 and no event
    /// type).
    ApiError,
    /// A refused access key (audit `auth_failure`).
    AuthFailure,
    /// An address blocked, or refused because it is blocked (audit `ip_blocked`).
    IpBlocked,
}

impl AlertEventType {
    /// Every type, in the order the app lists them.
    pub const ALL: [AlertEventType; 6] = [
        AlertEventType::Intrusion,
        AlertEventType::Anomaly,
        AlertEventType::RateLimit,
        AlertEventType::ApiError,
        AlertEventType::AuthFailure,
        AlertEventType::IpBlocked,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventType::Intrusion => "intrusion",
            AlertEventType::Anomaly => "anomaly",
            AlertEventType::RateLimit => "rate_limit",
            AlertEventType::ApiError => "api_error",
            AlertEventType::AuthFailure => "auth_failure",
            AlertEventType::IpBlocked => "ip_blocked",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One rule, as stored (camelCase keys like the spec).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    /// Unique within the document.
    pub id: String,
    /// Which events it watches.
    pub event_type: AlertEventType,
    /// Events below this severity are ignored.
    pub severity: AuditSeverity,
    /// Events needed within the window.
    pub threshold: u32,
    /// The window, in seconds.
    pub window_secs: u32,
    /// Silence after firing, in seconds.
    pub cooldown_secs: u32,
    /// Off: the rule never fires.
    pub enabled: bool,
    /// Show a notice in the app.
    #[serde(rename = "notifyUI")]
    pub notify_ui: bool,
    /// Write an `alert` entry to the audit log.
    pub notify_log: bool,
}

/// The `alert_rules` document.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertRules {
    /// The rules, in order.
    pub rules: Vec<AlertRule>,
}

impl AlertRules {
    /// The default rules ([`DEFAULT_RULES_JSON`]).
    pub fn defaults() -> Self {
        // The constant is checked by a unit test; an empty set is the safe fallback.
        parse(DEFAULT_RULES_JSON).unwrap_or_default()
    }

    /// The stored text form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"rules":[]}"#.to_owned())
    }
}

/// Validates an `alert_rules` document; every problem is reported with its path
/// (`rules[0].severity`). Absent optional fields take their documented defaults:
/// `threshold` 1, `windowSecs` 60, `cooldownSecs` 300, `enabled` true, `notifyUI`
/// true, `notifyLog` false.
pub fn parse(text: &str) -> Result<AlertRules, Vec<FieldProblem>> {
    let doc: Value = serde_json::from_str(text.trim())
        .map_err(|e| vec![problem("$", format!("not valid JSON: {e}"))])?;
    let rules = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => {
            let mut problems = Vec::new();
            for k in o.keys().filter(|k| k.as_str() != "rules") {
                problems.push(problem(k, "unknown field (expected only `rules`)"));
            }
            match o.get("rules") {
                Some(Value::Array(a)) if problems.is_empty() => a,
                Some(Value::Array(_)) => return Err(problems),
                Some(_) => {
                    problems.push(problem("rules", "must be an array of rules"));
                    return Err(problems);
                }
                None => {
                    problems.push(problem("rules", "is required"));
                    return Err(problems);
                }
            }
        }
        _ => return Err(vec![problem("$", "must be an object {\"rules\": [...]}")]),
    };
    let mut problems = Vec::new();
    if rules.len() > MAX_RULES {
        problems.push(problem("rules", format!("at most {MAX_RULES} rules")));
    }
    let mut out = Vec::with_capacity(rules.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].{f}");
        let Value::Object(o) = r else {
            problems.push(problem(&format!("rules[{i}]"), "must be an object"));
            continue;
        };
        let before = problems.len();
        for k in o.keys() {
            if !RULE_FIELDS.contains(&k.as_str()) {
                problems.push(problem(
                    &at(k),
                    format!("unknown field (known: {})", RULE_FIELDS.join(", ")),
                ));
            }
        }
        let id = match o.get("id") {
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    problems.push(problem(&at("id"), "must not be empty"));
                } else if s.len() > MAX_ID_LEN {
                    problems.push(problem(
                        &at("id"),
                        format!("at most {MAX_ID_LEN} characters"),
                    ));
                } else if s.chars().any(char::is_control) {
                    problems.push(problem(&at("id"), "must not contain control characters"));
                } else if let Some(first) = seen.insert(s.to_owned(), i) {
                    problems.push(problem(
                        &at("id"),
                        format!("duplicate id `{s}` (also rules[{first}])"),
                    ));
                }
                s.to_owned()
            }
            Some(_) => {
                problems.push(problem(&at("id"), "must be a string"));
                String::new()
            }
            None => {
                problems.push(problem(&at("id"), "is required"));
                String::new()
            }
        };
        let event_type = match o.get("eventType") {
            Some(Value::String(s)) => AlertEventType::parse(s).or_else(|| {
                problems.push(problem(
                    &at("eventType"),
                    format!("unknown event type `{s}`; expected one of {}", type_names()),
                ));
                None
            }),
            Some(_) => {
                problems.push(problem(&at("eventType"), "must be a string"));
                None
            }
            None => {
                problems.push(problem(&at("eventType"), "is required"));
                None
            }
        };
        let severity = match o.get("severity") {
            Some(Value::String(s)) => AuditSeverity::parse(s).or_else(|| {
                problems.push(problem(
                    &at("severity"),
                    format!("unknown severity `{s}`; expected one of critical, high, medium, low"),
                ));
                None
            }),
            Some(_) => {
                problems.push(problem(&at("severity"), "must be a string"));
                None
            }
            None => {
                problems.push(problem(&at("severity"), "is required"));
                None
            }
        };
        let threshold = int_field(
            o,
            "threshold",
            &at,
            1,
            MAX_THRESHOLD,
            DEFAULT_THRESHOLD,
            &mut problems,
        );
        let window_secs = int_field(
            o,
            "windowSecs",
            &at,
            1,
            MAX_SECS,
            DEFAULT_WINDOW_SECS,
            &mut problems,
        );
        let cooldown_secs = int_field(
            o,
            "cooldownSecs",
            &at,
            0,
            MAX_SECS,
            DEFAULT_COOLDOWN_SECS,
            &mut problems,
        );
        let enabled = bool_field(o, "enabled", &at, true, &mut problems);
        let notify_ui = bool_field(o, "notifyUI", &at, true, &mut problems);
        let notify_log = bool_field(o, "notifyLog", &at, false, &mut problems);
        if problems.len() > before {
            continue;
        }
        if let (Some(event_type), Some(severity)) = (event_type, severity) {
            out.push(AlertRule {
                id,
                event_type,
                severity,
                threshold,
                window_secs,
                cooldown_secs,
                enabled,
                notify_ui,
                notify_log,
            });
        }
    }
    if problems.is_empty() {
        Ok(AlertRules { rules: out })
    } else {
        Err(problems)
    }
}

/// The stored (object, camelCase, defaults filled in) form of a valid document.
pub fn normalise(text: &str) -> Result<String, Vec<FieldProblem>> {
    parse(text).map(|r| r.to_json())
}

const RULE_FIELDS: [&str; 9] = [
    "id",
    "eventType",
    "severity",
    "threshold",
    "windowSecs",
    "cooldownSecs",
    "enabled",
    "notifyUI",
    "notifyLog",
];

fn type_names() -> String {
    AlertEventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn problem(path: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: path.to_owned(),
        message: message.into(),
    }
}

fn int_field(
    o: &Map<String, Value>,
    name: &str,
    at: &dyn Fn(&str) -> String,
    min: u32,
    max: u32,
    default: u32,
    problems: &mut Vec<FieldProblem>,
) -> u32 {
    match o.get(name) {
        None | Some(Value::Null) => default,
        Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) if (min..=max).contains(&v) => v,
            _ => {
                problems.push(problem(
                    &at(name),
                    format!("must be a whole number from {min} to {max}"),
                ));
                default
            }
        },
        Some(_) => {
            problems.push(problem(
                &at(name),
                format!("must be a whole number from {min} to {max}"),
            ));
            default
        }
    }
}

fn bool_field(
    o: &Map<String, Value>,
    name: &str,
    at: &dyn Fn(&str) -> String,
    default: bool,
    problems: &mut Vec<FieldProblem>,
) -> bool {
    match o.get(name) {
        None => default,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.push(problem(&at(name), "must be true or false"));
            default
        }
    }
}

/// One security event, as the watcher read it from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Its kind.
    pub event_type: AlertEventType,
    /// Its severity.
    pub severity: AuditSeverity,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The client address, when known.
    pub ip: Option<String>,
}

/// What an audit row counts as, if anything: `auth_failure`, `ip_blocked` and
/// `rate_limit` rows by their type, server errors (status ≥ 500 without a type) as
/// `api_error`. Intrusions and anomalies are read from their own tables (the audit log
/// records only those that led to a block), so their audit rows are not counted
/// twice; `alert` rows (this module's own output) never count.
pub fn audit_event_kind(event_type: Option<&str>, status: i64) -> Option<AlertEventType> {
    match event_type {
        Some("auth_failure") => Some(AlertEventType::AuthFailure),
        Some("ip_blocked") => Some(AlertEventType::IpBlocked),
        Some("rate_limit") => Some(AlertEventType::RateLimit),
        None if status >= 500 => Some(AlertEventType::ApiError),
        _ => None,
    }
}

/// Severity of an intrusion attempt (as in the audit log's scale: acted upon).
pub const INTRUSION_SEVERITY: AuditSeverity = AuditSeverity::High;
/// Severity of an anomaly (worth a look).
pub const ANOMALY_SEVERITY: AuditSeverity = AuditSeverity::Medium;

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule.
    pub rule_id: String,
    /// What it watches.
    pub event_type: AlertEventType,
    /// The rule's severity (the least severe event that counts).
    pub severity: AuditSeverity,
    /// Matching events in the window when it fired.
    pub count: u32,
    /// The rule's threshold.
    pub threshold: u32,
    /// The window, in seconds.
    pub window_secs: u32,
    /// Matching events during the cool-down before this alert (not alerted then).
    pub suppressed: u64,
    /// The most severe matching event in the window.
    pub max_severity: AuditSeverity,
    /// The address of the last matching event, when known.
    pub sample_ip: Option<String>,
    /// When it fired (RFC 3339).
    pub at: String,
    /// For a human (English; the app shows its own text).
    pub message: String,
    /// Deliver to the app.
    pub notify_ui: bool,
    /// Deliver to the audit log.
    pub notify_log: bool,
}

#[derive(Debug, Default)]
struct RuleState {
    /// Times and severities of matching events in the window (at most `threshold`
    /// kept: more are not needed to decide, and they bound the memory).
    window: VecDeque<(DateTime<Utc>, AuditSeverity)>,
    quiet_until: Option<DateTime<Utc>>,
    suppressed: u64,
    last_ip: Option<String>,
}

/// Evaluates rules over a stream of events; keeps each rule's window and cool-down.
#[derive(Debug, Default)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    state: HashMap<String, RuleState>,
}

impl AlertEngine {
    /// An engine with these rules.
    pub fn new(rules: AlertRules) -> Self {
        let mut e = Self::default();
        e.set_rules(rules);
        e
    }

    /// Replaces the rules. A rule whose definition did not change keeps its window
    /// and cool-down (saving an unrelated rule must not re-arm a flood); a changed or
    /// removed rule starts afresh.
    pub fn set_rules(&mut self, rules: AlertRules) {
        let old: HashMap<&str, &AlertRule> =
            self.rules.iter().map(|r| (r.id.as_str(), r)).collect();
        let keep: Vec<String> = rules
            .rules
            .iter()
            .filter(|r| old.get(r.id.as_str()) == Some(r))
            .map(|r| r.id.clone())
            .collect();
        self.state.retain(|id, _| keep.contains(id));
        self.rules = rules.rules;
    }

    /// The rules in force.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Feeds events (in time order) and returns the alerts that fire at `now`.
    pub fn observe(&mut self, events: &[SecurityEvent], now: DateTime<Utc>) -> Vec<Alert> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            let st = self.state.entry(rule.id.clone()).or_default();
            let window = Duration::seconds(i64::from(rule.window_secs));
            let quiet = st.quiet_until.is_some_and(|q| now < q);
            for e in events
                .iter()
                .filter(|e| e.event_type == rule.event_type && e.severity >= rule.severity)
            {
                st.window.push_back((e.at, e.severity));
                if st.window.len() > rule.threshold as usize {
                    st.window.pop_front();
                }
                if e.ip.is_some() {
                    st.last_ip.clone_from(&e.ip);
                }
                if quiet {
                    st.suppressed += 1;
                }
            }
            while st.window.front().is_some_and(|(t, _)| now - *t >= window) {
                st.window.pop_front();
            }
            let count = st.window.len() as u32;
            if quiet || count < rule.threshold || count == 0 {
                continue;
            }
            let max_severity = st
                .window
                .iter()
                .map(|(_, s)| *s)
                .max()
                .unwrap_or(rule.severity);
            let message = if rule.threshold <= 1 {
                format!(
                    "{} event ({}){}",
                    rule.event_type.as_str(),
                    max_severity.as_str(),
                    st.last_ip
                        .as_deref()
                        .map(|ip| format!(" from {ip}"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "{count} {} events within {} s (threshold {})",
                    rule.event_type.as_str(),
                    rule.window_secs,
                    rule.threshold
                )
            };
            out.push(Alert {
                rule_id: rule.id.clone(),
                event_type: rule.event_type,
                severity: rule.severity,
                count,
                threshold: rule.threshold,
                window_secs: rule.window_secs,
                suppressed: std::mem::take(&mut st.suppressed),
                max_severity,
                sample_ip: st.last_ip.clone(),
                at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                message,
                notify_ui: rule.notify_ui,
                notify_log: rule.notify_log,
            });
            // The events that fired are spent; the cool-down starts now.
            st.window.clear();
            st.quiet_until = Some(now + Duration::seconds(i64::from(rule.cooldown_secs)));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn ev(kind: AlertEventType, sev: AuditSeverity, at: i64) -> SecurityEvent {
        SecurityEvent {
            event_type: kind,
            severity: sev,
            at: t(at),
            ip: Some("192.0.2.7".into()),
        }
    }

    fn rule(json: &str) -> AlertEngine {
        AlertEngine::new(parse(&format!(r#"{{"rules":[{json}]}}"#)).unwrap())
    }

    #[test]
    fn default_rules_parse_and_round_trip() {
        let d = parse(DEFAULT_RULES_JSON).unwrap();
        assert_eq!(d.rules.len(), 5);
        assert_eq!(AlertRules::defaults(), d);
        assert_eq!(normalise(DEFAULT_RULES_JSON).unwrap(), DEFAULT_RULES_JSON);
    }

    #[test]
    fn absent_fields_take_documented_defaults_and_arrays_are_accepted() {
        let r = parse(r#"[{"id":"a","eventType":"intrusion","severity":"low"}]"#).unwrap();
        let a = &r.rules[0];
        assert_eq!((a.threshold, a.window_secs, a.cooldown_secs), (1, 60, 300));
        assert!(a.enabled && a.notify_ui && !a.notify_log);
        assert_eq!(parse("[]").unwrap(), AlertRules::default());
        assert!(normalise("[]").unwrap() == r#"{"rules":[]}"#);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let e = parse(
            r#"{"rules":[{"id":"a","eventType":"intrusion","severity":"urgent","threshold":0,"enabled":"yes","x":1},
                         {"id":"a","eventType":"nope","severity":"low","windowSecs":100000},
                         {"eventType":"anomaly","severity":"low","notifyUI":1},
                         7]}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            paths,
            [
                "rules[0].x",
                "rules[0].severity",
                "rules[0].threshold",
                "rules[0].enabled",
                "rules[1].id",
                "rules[1].eventType",
                "rules[1].windowSecs",
                "rules[2].id",
                "rules[2].notifyUI",
                "rules[3]",
            ],
            "{e:?}"
        );
        assert!(
            e[1].message.contains("critical, high, medium, low"),
            "{e:?}"
        );
        assert!(e[4].message.contains("duplicate id `a`"), "{e:?}");
        assert!(e[5].message.contains("api_error"), "{e:?}");
        assert_eq!(parse("{").unwrap_err()[0].field, "$");
        assert_eq!(parse(r#"{"rule":[]}"#).unwrap_err()[0].field, "rule");
        assert_eq!(parse("3").unwrap_err()[0].field, "$");
    }

    #[test]
    fn audit_rows_map_to_event_kinds() {
        assert_eq!(
            audit_event_kind(Some("auth_failure"), 401),
            Some(AlertEventType::AuthFailure)
        );
        assert_eq!(audit_event_kind(None, 502), Some(AlertEventType::ApiError));
        assert_eq!(audit_event_kind(None, 404), None);
        assert_eq!(audit_event_kind(Some("alert"), 0), None);
        assert_eq!(audit_event_kind(Some("intrusion"), 403), None);
    }

    #[test]
    fn threshold_counts_events_within_the_window() {
        let mut e = rule(
            r#"{"id":"a","eventType":"auth_failure","severity":"medium","threshold":3,"windowSecs":10}"#,
        );
        let f = |s| ev(AlertEventType::AuthFailure, AuditSeverity::Medium, s);
        assert!(e.observe(&[f(0), f(1)], t(1)).is_empty());
        // The first two left the window before the third arrived.
        assert!(e.observe(&[f(12)], t(12)).is_empty());
        let a = e.observe(&[f(13), f(14)], t(14));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].count, a[0].threshold, a[0].window_secs), (3, 3, 10));
        assert_eq!(a[0].sample_ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn severity_is_a_floor_and_type_must_match() {
        let mut e = rule(r#"{"id":"a","eventType":"intrusion","severity":"high"}"#);
        assert!(e
            .observe(
                &[ev(AlertEventType::Intrusion, AuditSeverity::Medium, 0)],
                t(0)
            )
            .is_empty());
        assert!(e
            .observe(
                &[ev(AlertEventType::Anomaly, AuditSeverity::Critical, 0)],
                t(0)
            )
            .is_empty());
        let a = e.observe(
            &[ev(AlertEventType::Intrusion, AuditSeverity::Critical, 1)],
            t(1),
        );
        assert_eq!(a[0].max_severity, AuditSeverity::Critical);
    }

    #[test]
    fn a_flood_gives_one_alert_per_cool_down() {
        let mut e =
            rule(r#"{"id":"a","eventType":"intrusion","severity":"low","cooldownSecs":30}"#);
        let i = |s| ev(AlertEventType::Intrusion, AuditSeverity::High, s);
        let mut fired = 0;
        let mut suppressed = 0;
        for s in 0..65 {
            let a = e.observe(&[i(s), i(s)], t(s));
            fired += a.len();
            suppressed += a.iter().map(|a| a.suppressed).sum::<u64>();
        }
        // Fires at 0, 30 and 60.
        assert_eq!(fired, 3);
        assert_eq!(
            suppressed,
            2 * 58,
            "events of the two cool-downs are reported"
        );
    }

    #[test]
    fn disabled_rules_never_fire_and_unchanged_rules_keep_their_cool_down() {
        let mut e = rule(r#"{"id":"a","eventType":"rate_limit","severity":"low","enabled":false}"#);
        assert!(e
            .observe(
                &[ev(AlertEventType::RateLimit, AuditSeverity::Medium, 0)],
                t(0)
            )
            .is_empty());
        let r = parse(r#"[{"id":"a","eventType":"rate_limit","severity":"low"}]"#).unwrap();
        e.set_rules(r.clone());
        let x = |s| ev(AlertEventType::RateLimit, AuditSeverity::Medium, s);
        assert_eq!(e.observe(&[x(1)], t(1)).len(), 1);
        e.set_rules(r);
        assert!(e.observe(&[x(2)], t(2)).is_empty(), "still cooling down");
        let changed =
            parse(r#"[{"id":"a","eventType":"rate_limit","severity":"low","threshold":1,"cooldownSecs":10}]"#)
                .unwrap();
        e.set_rules(changed);
        assert_eq!(
            e.observe(&[x(3)], t(3)).len(),
            1,
            "a changed rule starts afresh"
        );
    }
}
