//! Resource protection (spec 40-security §10): the admission decision, and pure parsers
//! of `/proc/stat` and `/proc/meminfo` text (the caller reads the files, at most every
//! 5 seconds, and keeps the previous CPU sample).
//!
//! A sampler that fails (unreadable file, unknown format, NaN) must not take the service
//! down: unknown values admit. The connection limit needs no sampler and always applies.

use serde::Serialize;

/// Thresholds (policy `resource_protection`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResourceThresholds {
    /// CPU busy percentage above which new requests are refused (90).
    pub cpu_pct: f64,
    /// Memory used percentage above which new requests are refused (90).
    pub memory_pct: f64,
    /// Open connections above which new ones are refused (100).
    pub max_connections: u32,
}

impl Default for ResourceThresholds {
    fn default() -> Self {
        Self {
            cpu_pct: 90.0,
            memory_pct: 90.0,
            max_connections: 100,
        }
    }
}

/// Which resource is exhausted (`resource_alerts.alert_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
    /// Concurrent connections.
    Connections,
}

impl ResourceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Connections => "connections",
        }
    }
}

/// Why a request is refused (`503 resource_throttle`, or a refused connection).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThrottleReason {
    /// The exhausted resource.
    pub kind: ResourceKind,
    /// Its current value (percent, or connections).
    pub value: f64,
    /// The threshold it exceeds.
    pub threshold: f64,
}

/// The admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Admission {
    /// Go ahead.
    Admit,
    /// Refuse for now.
    Throttle(ThrottleReason),
}

impl Admission {
    /// Whether the request may proceed.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Admission::Admit)
    }
}

/// The resource guard: a pure decision over the latest sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceGuard;

impl ResourceGuard {
    /// Decides whether to admit a new request. Connections are checked first (they
    /// need no sampler), then CPU, then memory. A value above the threshold (strictly)
    /// throttles; `NaN` or negative values mean "unknown" and admit.
    pub fn admit(cpu_pct: f64, mem_pct: f64, open_conns: u32, t: &ResourceThresholds) -> Admission {
        if open_conns > t.max_connections {
            return Admission::Throttle(ThrottleReason {
                kind: ResourceKind::Connections,
                value: f64::from(open_conns),
                threshold: f64::from(t.max_connections),
            });
        }
        let over = |v: f64, limit: f64| v.is_finite() && v >= 0.0 && limit.is_finite() && v > limit;
        if over(cpu_pct, t.cpu_pct) {
            return Admission::Throttle(ThrottleReason {
                kind: ResourceKind::Cpu,
                value: cpu_pct,
                threshold: t.cpu_pct,
            });
        }
        if over(mem_pct, t.memory_pct) {
            return Admission::Throttle(ThrottleReason {
                kind: ResourceKind::Memory,
                value: mem_pct,
                threshold: t.memory_pct,
            });
        }
        Admission::Admit
    }
}

/// Why `/proc` text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcParseError {
    /// The expected line is missing.
    #[error("`{0}` not found")]
    Missing(&'static str),
    /// A field is not a number.
    #[error("`{0}` has a malformed value")]
    Malformed(&'static str),
}

/// Aggregate CPU time counters from the first `cpu ` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CpuSample {
    /// All time (user+nice+system+idle+iowait+irq+softirq+steal).
    pub total: u64,
    /// Idle time (idle+iowait).
    pub idle: u64,
}

impl CpuSample {
    /// Parses `/proc/stat` text. Needs at least the four classic fields (user, nice,
    /// system, idle); iowait, irq, softirq and steal are used when present; guest times
    /// are already included in user/nice and are ignored.
    pub fn parse_proc_stat(text: &str) -> Result<Self, ProcParseError> {
        let line = text
            .lines()
            .find(|l| l.starts_with("cpu ") || l.starts_with("cpu\t"))
            .ok_or(ProcParseError::Missing("cpu"))?;
        let mut fields = [0u64; 8];
        let mut n = 0usize;
        for (slot, tok) in fields.iter_mut().zip(line.split_ascii_whitespace().skip(1)) {
            *slot = tok.parse().map_err(|_| ProcParseError::Malformed("cpu"))?;
            n += 1;
        }
        if n < 4 {
            return Err(ProcParseError::Malformed("cpu"));
        }
        let total = fields.iter().fold(0u64, |a, v| a.saturating_add(*v));
        let [_, _, _, idle, iowait, ..] = fields;
        Ok(Self {
            total,
            idle: idle.saturating_add(iowait),
        })
    }

    /// CPU busy percentage between an earlier sample and this one, `None` when no time
    /// passed or the counters went backwards (reboot, wrap, bogus input).
    pub fn busy_pct_since(&self, earlier: &CpuSample) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        if total == 0 || idle > total {
            return None;
        }
        let pct = (total - idle) as f64 * 100.0 / total as f64;
        Some(pct)
    }
}

/// Memory figures from `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemSample {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemAvailable`, or `MemFree + Buffers + Cached` on kernels older than 3.14.
    pub available_kib: u64,
}

impl MemSample {
    /// Parses `/proc/meminfo` text.
    pub fn parse_meminfo(text: &str) -> Result<Self, ProcParseError> {
        let mut total = None;
        let mut available = None;
        let (mut free, mut buffers, mut cached) = (None, None, None);
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let slot = match key.trim() {
                "MemTotal" => &mut total,
                "MemAvailable" => &mut available,
                "MemFree" => &mut free,
                "Buffers" => &mut buffers,
                "Cached" => &mut cached,
                _ => continue,
            };
            let num = rest.split_ascii_whitespace().next().unwrap_or("");
            *slot = Some(
                num.parse::<u64>()
                    .map_err(|_| ProcParseError::Malformed("meminfo"))?,
            );
        }
        let total_kib = total.ok_or(ProcParseError::Missing("MemTotal"))?;
        let available_kib = match available {
            Some(a) => a,
            None => free
                .ok_or(ProcParseError::Missing("MemAvailable"))?
                .saturating_add(buffers.unwrap_or(0))
                .saturating_add(cached.unwrap_or(0)),
        };
        Ok(Self {
            total_kib,
            available_kib,
        })
    }

    /// Used memory percentage, `None` when the total is 0.
    pub fn used_pct(&self) -> Option<f64> {
        if self.total_kib == 0 {
            return None;
        }
        let used = self.total_kib.saturating_sub(self.available_kib);
        let pct = used as f64 * 100.0 / self.total_kib as f64;
        Some(pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str =
        "cpu  4705 356 584 3699 23 0 11 0 0 0\ncpu0 1393 280 287 ...\nintr 1 2 3\n";
    const STAT_2: &str = "cpu  5705 356 584 3799 23 0 11 0 0 0\ncpu0 1\n";
    const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\nBuffers:          500000 kB\nCached:          2000000 kB\n";

    #[test]
    fn admission_table() {
        let t = ResourceThresholds::default();
        let cases = [
            (10.0, 10.0, 5, None),
            (90.0, 90.0, 100, None),
            (90.1, 10.0, 5, Some(ResourceKind::Cpu)),
            (10.0, 95.0, 5, Some(ResourceKind::Memory)),
            (99.0, 99.0, 101, Some(ResourceKind::Connections)),
            (f64::NAN, f64::NAN, 0, None),
            (f64::INFINITY, -5.0, 0, None),
        ];
        for (cpu, mem, conns, want) in cases {
            let got = match ResourceGuard::admit(cpu, mem, conns, &t) {
                Admission::Admit => None,
                Admission::Throttle(r) => Some(r.kind),
            };
            assert_eq!(got, want, "cpu {cpu} mem {mem} conns {conns}");
        }
        assert!(ResourceGuard::admit(1.0, 1.0, 1, &t).is_admitted());
    }

    #[test]
    fn cpu_percent_between_samples() {
        let a = CpuSample::parse_proc_stat(STAT_1).unwrap();
        let b = CpuSample::parse_proc_stat(STAT_2).unwrap();
        assert_eq!(a.total, 4705 + 356 + 584 + 3699 + 23 + 11);
        assert_eq!(a.idle, 3699 + 23);
        let pct = b.busy_pct_since(&a).unwrap();
        assert!((pct - 1000.0 * 100.0 / 1100.0).abs() < 1e-9, "{pct}");
        assert_eq!(a.busy_pct_since(&b), None, "backwards");
        assert_eq!(a.busy_pct_since(&a), None, "no time passed");
    }

    #[test]
    fn proc_stat_errors() {
        assert_eq!(
            CpuSample::parse_proc_stat(""),
            Err(ProcParseError::Missing("cpu"))
        );
        assert_eq!(
            CpuSample::parse_proc_stat("cpu  1 2 3\n"),
            Err(ProcParseError::Malformed("cpu"))
        );
        assert_eq!(
            CpuSample::parse_proc_stat("cpu  1 x 3 4\n"),
            Err(ProcParseError::Malformed("cpu"))
        );
        assert!(CpuSample::parse_proc_stat("cpu  99999999999999999999 1 1 1\n").is_err());
        let big = format!("cpu  {m} {m} {m} {m} {m}\n", m = u64::MAX);
        let s = CpuSample::parse_proc_stat(&big).unwrap();
        assert_eq!(s.total, u64::MAX);
    }

    #[test]
    fn meminfo() {
        let m = MemSample::parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.available_kib, 4_000_000);
        assert!((m.used_pct().unwrap() - 75.0).abs() < 1e-9);
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB\n";
        let m = MemSample::parse_meminfo(old).unwrap();
        assert_eq!(m.available_kib, 200);
        assert!((m.used_pct().unwrap() - 80.0).abs() < 1e-9);
        assert_eq!(
            MemSample::parse_meminfo(""),
            Err(ProcParseError::Missing("MemTotal"))
        );
        assert_eq!(
            MemSample::parse_meminfo("MemTotal: 10 kB\n"),
            Err(ProcParseError::Missing("MemAvailable"))
        );
        assert!(MemSample::parse_meminfo("MemTotal: -1 kB\n").is_err());
        let zero = MemSample::parse_meminfo("MemTotal: 0 kB\nMemAvailable: 5 kB\n").unwrap();
        assert_eq!(zero.used_pct(), None);
        let over = MemSample::parse_meminfo("MemTotal: 10 kB\nMemAvailable: 50 kB\n").unwrap();
        assert_eq!(over.used_pct(), Some(0.0));
    }
}
