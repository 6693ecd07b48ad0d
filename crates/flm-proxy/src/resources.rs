//! CPU and memory samples for resource protection (spec 40-security §10).
//!
//! CPU is the **proxy process's own** share of the machine (all cores), not the
//! system's: the engines FLM fronts run on the same machine and a CPU-bound inference
//! keeps the system at 100 % for minutes, which must not make the gateway refuse its
//! clients. What resource protection defends against is a flood that makes the proxy
//! itself eat the machine. Memory is the system's (`MemAvailable`): when it is nearly
//! exhausted, accepting more work risks the OOM killer for everyone.
//!
//! Off Linux, or when `/proc` cannot be read, samples are `NaN` ("unknown"), which
//! admits.

use std::time::Instant;

use flm_guard::MemSample;

/// Clock ticks per second of `/proc/self/stat` (USER_HZ: 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

pub(crate) struct Sampler {
    last: Option<(Instant, u64)>,
    cores: f64,
}

impl Sampler {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            last: None,
            cores: cores as f64,
        }
    }

    /// `(process CPU %, system memory used %)`; `NaN` when unknown.
    pub(crate) fn sample(&mut self) -> (f64, f64) {
        let cpu = match process_ticks() {
            Some(ticks) => {
                let now = Instant::now();
                let pct = match self.last {
                    Some((t, prev)) => {
                        let secs = now.duration_since(t).as_secs_f64();
                        if secs > 0.0 {
                            ticks.saturating_sub(prev) as f64 / TICKS_PER_SEC / secs / self.cores
                                * 100.0
                        } else {
                            f64::NAN
                        }
                    }
                    None => f64::NAN,
                };
                self.last = Some((now, ticks));
                pct
            }
            None => f64::NAN,
        };
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| MemSample::parse_meminfo(&t).ok())
            .and_then(|m| m.used_pct())
            .unwrap_or(f64::NAN);
        (cpu, mem)
    }
}

/// utime + stime of this process, in ticks.
fn process_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_ticks(&text)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`; the command name (field 2) may contain
/// spaces and parentheses, so counting starts after the last `)`.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_read_after_the_command_name() {
        let line = "1234 (flm (proxy) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_stat_ticks(line), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn the_sampler_reports_this_process() {
        let mut s = Sampler::new();
        let (cpu, mem) = s.sample();
        assert!(cpu.is_nan(), "no previous sample yet");
        if cfg!(target_os = "linux") {
            assert!(mem > 0.0 && mem <= 100.0, "{mem}");
            let spin = Instant::now();
            while spin.elapsed().as_millis() < 50 {
                std::hint::black_box(0u64);
            }
            let (cpu, _) = s.sample();
            assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        }
    }
}
