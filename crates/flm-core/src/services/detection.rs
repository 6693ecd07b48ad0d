//! Status classification: from one probe outcome (and the previous state) to exactly
//! one of the five statuses of spec 10-engines §3.
//!
//! A one-shot check cannot wait for failures to repeat, so it reports what it sees:
//! an unreachable configured endpoint is `ErrorNetwork` at once, with
//! `consecutive_failures` counting the failed checks in a row (carried over from the
//! previous state). Degradation is sticky over a window of the last three checks:
//! an engine becomes `RunningHealthy` again only after three good checks in a row.

use crate::engine::{EngineSource, EngineStatus};
use crate::ports::ProbeOutcome;

/// Checks remembered for the degraded → healthy recovery rule.
pub const RECOVERY_WINDOW: usize = 3;

/// Thresholds used by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectionThresholds {
    /// Healthy/Degraded latency boundary.
    pub health_latency_threshold_ms: u64,
}

/// Result of classifying one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The new status.
    pub status: EngineStatus,
    /// Window of recent checks (true = that check was degraded), newest last.
    pub recent_degraded: Vec<bool>,
}

/// Classifies one probe outcome.
///
/// Returns `None` when there is nothing to report: a default address where nothing
/// (or something other than this engine) answers and no binary is installed.
pub fn classify(
    outcome: &ProbeOutcome,
    source: EngineSource,
    binary_found: bool,
    previous: Option<(&EngineStatus, &[bool])>,
    thresholds: DetectionThresholds,
) -> Option<Classified> {
    let prev_failures = match previous {
        Some((
            EngineStatus::ErrorNetwork {
                consecutive_failures,
                ..
            },
            _,
        )) => *consecutive_failures,
        _ => 0,
    };
    let prev_window: &[bool] = previous.map(|(_, w)| w).unwrap_or(&[]);
    let not_running = |reason: &str, timed_out: bool| -> Option<Classified> {
        if binary_found && source == EngineSource::Default {
            return Some(Classified {
                status: EngineStatus::InstalledOnly,
                recent_degraded: Vec::new(),
            });
        }
        if source == EngineSource::Configured || timed_out {
            return Some(Classified {
                status: EngineStatus::ErrorNetwork {
                    reason: reason.to_owned(),
                    consecutive_failures: prev_failures.saturating_add(1),
                },
                recent_degraded: Vec::new(),
            });
        }
        None
    };
    match outcome {
        ProbeOutcome::Unreachable { reason } => not_running(reason, false),
        ProbeOutcome::TimedOut { reason } => not_running(reason, true),
        ProbeOutcome::WrongIdentity { found } => match source {
            EngineSource::Configured => Some(Classified {
                status: EngineStatus::ErrorApi {
                    reason: format!(
                        "the endpoint answers as {found}, not as the configured engine kind"
                    ),
                },
                recent_degraded: Vec::new(),
            }),
            EngineSource::Default if binary_found => Some(Classified {
                status: EngineStatus::InstalledOnly,
                recent_degraded: Vec::new(),
            }),
            EngineSource::Default => None,
        },
        ProbeOutcome::BadResponse { reason } => Some(Classified {
            status: EngineStatus::ErrorApi {
                reason: reason.clone(),
            },
            recent_degraded: Vec::new(),
        }),
        ProbeOutcome::Answered {
            latency_ms,
            warning,
            ..
        } => {
            let slow = *latency_ms >= thresholds.health_latency_threshold_ms;
            let degraded_now = slow || warning.is_some();
            let mut window: Vec<bool> = prev_window.to_vec();
            window.push(degraded_now);
            if window.len() > RECOVERY_WINDOW {
                window.drain(..window.len() - RECOVERY_WINDOW);
            }
            let status = if let Some(w) = warning {
                EngineStatus::RunningDegraded {
                    latency_ms: *latency_ms,
                    reason: w.clone(),
                }
            } else if slow {
                EngineStatus::RunningDegraded {
                    latency_ms: *latency_ms,
                    reason: format!(
                        "slow: {latency_ms} ms is at or above the {} ms threshold",
                        thresholds.health_latency_threshold_ms
                    ),
                }
            } else if window.iter().any(|d| *d) {
                let bad = window.iter().filter(|d| **d).count();
                EngineStatus::RunningDegraded {
                    latency_ms: *latency_ms,
                    reason: format!(
                        "recovering: {bad} of the last {} checks were degraded",
                        window.len()
                    ),
                }
            } else {
                EngineStatus::RunningHealthy {
                    latency_ms: *latency_ms,
                }
            };
            Some(Classified {
                status,
                recent_degraded: window,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineCapabilities;

    const T: DetectionThresholds = DetectionThresholds {
        health_latency_threshold_ms: 1500,
    };

    fn answered(latency_ms: u64, warning: Option<&str>) -> ProbeOutcome {
        ProbeOutcome::Answered {
            latency_ms,
            version: None,
            model_count: 1,
            warning: warning.map(str::to_owned),
            capabilities: EngineCapabilities::default(),
        }
    }

    #[test]
    fn healthy_below_threshold_degraded_at_it() {
        let c = classify(&answered(10, None), EngineSource::Default, false, None, T).unwrap();
        assert_eq!(c.status, EngineStatus::RunningHealthy { latency_ms: 10 });
        let c = classify(&answered(1500, None), EngineSource::Default, false, None, T).unwrap();
        assert_eq!(c.status.name(), "RunningDegraded");
    }

    #[test]
    fn warning_degrades_and_recovery_needs_three_good_checks() {
        let c = classify(
            &answered(5, Some("Loading model")),
            EngineSource::Default,
            false,
            None,
            T,
        )
        .unwrap();
        assert_eq!(c.status.reason(), Some("Loading model"));
        let mut window = c.recent_degraded;
        let mut status = c.status;
        for i in 0..3 {
            let c = classify(
                &answered(5, None),
                EngineSource::Default,
                false,
                Some((&status, &window)),
                T,
            )
            .unwrap();
            status = c.status;
            window = c.recent_degraded;
            if i < 2 {
                assert_eq!(status.name(), "RunningDegraded", "check {i}");
            }
        }
        assert_eq!(status, EngineStatus::RunningHealthy { latency_ms: 5 });
    }

    #[test]
    fn unreachable_default_without_binary_is_not_reported() {
        let o = ProbeOutcome::Unreachable {
            reason: "refused".into(),
        };
        assert!(classify(&o, EngineSource::Default, false, None, T).is_none());
        let c = classify(&o, EngineSource::Default, true, None, T).unwrap();
        assert_eq!(c.status, EngineStatus::InstalledOnly);
    }

    #[test]
    fn unreachable_configured_counts_failures() {
        let o = ProbeOutcome::Unreachable {
            reason: "refused".into(),
        };
        let c = classify(&o, EngineSource::Configured, false, None, T).unwrap();
        let c2 = classify(
            &o,
            EngineSource::Configured,
            false,
            Some((&c.status, &[])),
            T,
        )
        .unwrap();
        assert_eq!(
            c2.status,
            EngineStatus::ErrorNetwork {
                reason: "refused".into(),
                consecutive_failures: 2
            }
        );
    }

    #[test]
    fn wrong_identity() {
        let o = ProbeOutcome::WrongIdentity {
            found: "llama.cpp".into(),
        };
        assert!(classify(&o, EngineSource::Default, false, None, T).is_none());
        let c = classify(&o, EngineSource::Configured, false, None, T).unwrap();
        assert_eq!(c.status.name(), "ErrorApi");
        assert!(c.status.reason().unwrap().contains("llama.cpp"));
    }

    #[test]
    fn hang_on_default_port_is_reported() {
        let o = ProbeOutcome::TimedOut {
            reason: "no answer within 200 ms".into(),
        };
        let c = classify(&o, EngineSource::Default, false, None, T).unwrap();
        assert_eq!(c.status.name(), "ErrorNetwork");
    }
}
