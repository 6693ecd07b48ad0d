//! Alert delivery: the daemon's watcher of new security events.
//!
//! About once a second it reads what was written since its last look — audit rows
//! after the last id seen (keyset on the primary key), intrusion attempts and
//! anomalies created since a short look-back (the `created_at` index) — never a scan.
//! It evaluates the `alert_rules` setting (read again every tick, so a change by the
//! app, `flm config set` or another process applies without a restart) with
//! [`flm_core::alerts::AlertEngine`] and delivers each alert: `notifyUI` → an `alert`
//! event on the app's live stream, `notifyLog` → one `alert` row in the audit log.
//! History from before the daemon started is not alerted on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flm_core::alerts::{
    self, Alert, AlertEngine, AlertRules, SecurityEvent, ANOMALY_SEVERITY, INTRUSION_SEVERITY,
};
use flm_core::security::{
    AuditDirection, AuditEvent, AuditPageRequest, AuditRepository, AuditSeverity, EventPageQuery,
    SecurityEventRepository,
};
use flm_core::services::ConfigService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ui::types::{AlertEvent, AppEvent};
use crate::ui::EventBus;

/// How often the watcher looks.
pub const POLL: Duration = Duration::from_secs(1);
/// Rows read per query; a tick reads at most [`MAX_PAGES`] pages of audit rows.
const PAGE: u32 = 500;
const MAX_PAGES: usize = 20;
/// Intrusions and anomalies are written by a batching writer with the detection time
/// as `created_at`, so a row can appear a little after a later-stamped one: each tick
/// re-reads this far back and skips the ids it already counted.
const LOOKBACK: chrono::Duration = chrono::Duration::seconds(10);

/// What the watcher reads and writes.
#[derive(Clone)]
pub struct AlertDeps {
    /// Settings (`alert_rules`).
    pub config: ConfigService,
    /// The audit log: read for events, written for `notifyLog`.
    pub audit: Option<Arc<dyn AuditRepository>>,
    /// Intrusion attempts and anomalies.
    pub events: Option<Arc<dyn SecurityEventRepository>>,
}

/// Starts the watcher; it ends with `shutdown`.
pub fn spawn(
    deps: AlertDeps,
    bus: EventBus,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut w = Watcher::new(deps, bus).await;
        loop {
            tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            w.tick(Utc::now()).await;
        }
    })
}

/// A table read from a time with look-back: the ids already counted.
struct TimeCursor {
    since: Option<DateTime<Utc>>,
    /// When the watcher started: the look-back never reaches before it.
    floor: DateTime<Utc>,
    seen: HashMap<String, DateTime<Utc>>,
}

impl TimeCursor {
    /// Remembers the rows and moves the bound; returns which ids are new.
    fn admit<'a>(
        &mut self,
        rows: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> std::collections::HashSet<String> {
        let mut fresh = std::collections::HashSet::new();
        for (id, at) in rows {
            if self.seen.insert(id.to_owned(), at).is_none() {
                fresh.insert(id.to_owned());
            }
        }
        let bound = (now - LOOKBACK).max(self.floor);
        self.seen.retain(|_, at| *at >= bound - LOOKBACK);
        self.since = Some(bound);
        fresh
    }
}

struct Watcher {
    deps: AlertDeps,
    bus: EventBus,
    engine: AlertEngine,
    rules_text: Option<String>,
    audit_after: i64,
    intrusions: TimeCursor,
    anomalies: TimeCursor,
}

impl Watcher {
    async fn new(deps: AlertDeps, bus: EventBus) -> Self {
        let now = Utc::now();
        let audit_after = match &deps.audit {
            Some(a) => a
                .page(&AuditPageRequest {
                    direction: AuditDirection::NewestFirst,
                    limit: 1,
                    ..Default::default()
                })
                .await
                .ok()
                .and_then(|p| p.rows.first().map(|r| r.id))
                .unwrap_or(0),
            None => 0,
        };
        // Start at "now": what happened before the daemon started is not alerted on.
        let start = |()| TimeCursor {
            since: Some(now),
            floor: now,
            seen: HashMap::new(),
        };
        let mut w = Self {
            deps,
            bus,
            engine: AlertEngine::new(AlertRules::default()),
            rules_text: None,
            audit_after,
            intrusions: start(()),
            anomalies: start(()),
        };
        w.reload_rules().await;
        w
    }

    async fn reload_rules(&mut self) {
        let text = match self.deps.config.get(alerts::SETTING_KEY).await {
            Ok(e) => e.value,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot read alert_rules; keeping the rules in force");
                return;
            }
        };
        if self.rules_text.as_deref() == Some(text.as_str()) {
            return;
        }
        match alerts::parse(&text) {
            Ok(rules) => {
                tracing::info!(rules = rules.rules.len(), "alert rules loaded");
                self.engine.set_rules(rules);
            }
            Err(problems) => {
                // Fail closed on the last good rules rather than going silent.
                let first = problems
                    .first()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .unwrap_or_default();
                tracing::warn!(problem = %first, "alerts: stored alert_rules are invalid; keeping the rules in force");
            }
        }
        self.rules_text = Some(text);
    }

    async fn tick(&mut self, now: DateTime<Utc>) {
        self.reload_rules().await;
        let mut events = self.read_audit().await;
        events.extend(self.read_intrusions(now).await);
        events.extend(self.read_anomalies(now).await);
        events.sort_by_key(|e| e.at);
        for alert in self.engine.observe(&events, now) {
            self.deliver(&alert).await;
        }
    }

    async fn read_audit(&mut self) -> Vec<SecurityEvent> {
        let Some(audit) = &self.deps.audit else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = match audit
                .page(&AuditPageRequest {
                    direction: AuditDirection::OldestFirst,
                    cursor: Some(self.audit_after),
                    limit: PAGE,
                    ..Default::default()
                })
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: cannot read the audit log");
                    break;
                }
            };
            let n = page.rows.len();
            for r in page.rows {
                self.audit_after = self.audit_after.max(r.id);
                let Some(kind) = alerts::audit_event_kind(r.event_type.as_deref(), r.status) else {
                    continue;
                };
                let at = DateTime::parse_from_rfc3339(&r.created_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                out.push(SecurityEvent {
                    event_type: kind,
                    severity: AuditSeverity::parse(&r.severity).unwrap_or(AuditSeverity::Medium),
                    at,
                    ip: r.ip,
                });
            }
            if n < PAGE as usize {
                break;
            }
        }
        out
    }

    async fn read_intrusions(&mut self, now: DateTime<Utc>) -> Vec<SecurityEvent> {
        let Some(repo) = &self.deps.events else {
            return Vec::new();
        };
        let q = EventPageQuery {
            since: self.intrusions.since,
            limit: PAGE,
            ..Default::default()
        };
        let rows = match repo.intrusion_page(&q).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot read intrusion attempts");
                return Vec::new();
            }
        };
        let fresh = self
            .intrusions
            .admit(rows.iter().map(|r| (r.id.as_str(), r.created_at)), now);
        // One request can match several patterns (one row each, sharing the
        // address and time): it is one intrusion attempt.
        let mut attempts = std::collections::HashSet::new();
        rows.into_iter()
            .filter(|r| fresh.contains(&r.id))
            .filter(|r| attempts.insert((r.ip.clone(), r.created_at)))
            .map(|r| SecurityEvent {
                event_type: alerts::AlertEventType::Intrusion,
                severity: INTRUSION_SEVERITY,
                at: r.created_at,
                ip: Some(r.ip),
            })
            .collect()
    }

    async fn read_anomalies(&mut self, now: DateTime<Utc>) -> Vec<SecurityEvent> {
        let Some(repo) = &self.deps.events else {
            return Vec::new();
        };
        let q = EventPageQuery {
            since: self.anomalies.since,
            limit: PAGE,
            ..Default::default()
        };
        let rows = match repo.anomaly_page(&q).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot read anomalies");
                return Vec::new();
            }
        };
        let fresh = self
            .anomalies
            .admit(rows.iter().map(|r| (r.id.as_str(), r.created_at)), now);
        rows.into_iter()
            .filter(|r| fresh.contains(&r.id))
            .map(|r| SecurityEvent {
                event_type: alerts::AlertEventType::Anomaly,
                severity: ANOMALY_SEVERITY,
                at: r.created_at,
                ip: Some(r.ip),
            })
            .collect()
    }

    async fn deliver(&self, a: &Alert) {
        tracing::info!(rule_id = %a.rule_id, event_type = a.event_type.as_str(), count = a.count, "alert fired");
        let event = AlertEvent {
            rule_id: a.rule_id.clone(),
            event_type: a.event_type,
            severity: a.severity,
            max_severity: a.max_severity,
            count: a.count,
            threshold: a.threshold,
            window_secs: a.window_secs,
            suppressed: a.suppressed,
            message: a.message.clone(),
            at: a.at.clone(),
            ip: a.sample_ip.clone(),
        };
        if a.notify_ui {
            self.bus.emit(AppEvent::Alert(event.clone()));
        }
        if a.notify_log {
            let Some(audit) = &self.deps.audit else {
                return;
            };
            let ev = AuditEvent {
                request_id: crate::request_id::new_request_id().0,
                api_key_id: None,
                endpoint: "-".into(),
                status: 0,
                latency_ms: None,
                created_at: Utc::now(),
                event_type: Some("alert".into()),
                severity: a.max_severity,
                ip: a.sample_ip.clone(),
                details: serde_json::to_string(&event).ok(),
            };
            if let Err(e) = audit.append_batch(&[ev]).await {
                tracing::warn!(error = %e, rule_id = %a.rule_id, "alerts: cannot write the alert to the audit log");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_look_back_counts_each_row_once_and_never_reaches_before_the_start() {
        let mut c = TimeCursor {
            since: Some(t(0)),
            floor: t(0),
            seen: HashMap::new(),
        };
        let fresh = c.admit([("a", t(1)), ("b", t(1))].into_iter(), t(1));
        assert_eq!(fresh.len(), 2);
        assert_eq!(c.since, Some(t(0)), "not before the start");
        // Read again with a late row stamped earlier: only it is new.
        let fresh = c.admit([("a", t(1)), ("c", t(0)), ("b", t(1))].into_iter(), t(2));
        assert_eq!(fresh.into_iter().collect::<Vec<_>>(), ["c"]);
        let _ = c.admit(std::iter::empty(), t(100));
        assert_eq!(c.since, Some(t(90)));
        assert!(c.seen.is_empty(), "old ids are forgotten");
    }
}
