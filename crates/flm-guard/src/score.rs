//! Per-IP cumulative scores with decay and the action ladder shared by intrusion and
//! anomaly detection (spec 40-security §7, §8).
//!
//! - A score decays by **1 point per full minute without new points** (the partial
//!   minute is dropped when new points arrive: a source that keeps scoring never decays).
//! - **Weak signals** (empty User-Agent, non-preflight `OPTIONS`, repeated identical
//!   requests, slow requests…) count at most once per [`WEAK_SIGNAL_COOLDOWN_MS`] per IP
//!   and pattern, and can raise a score only up to just below the warning threshold.
//!   Benign clients trip them (a script without a User-Agent, a benchmark that repeats
//!   one prompt against a slow model), so on their own they never warn or block, yet
//!   they are logged and they add to the score of a real attack.
//! - The ladder: below `warn` nothing; `warn`..`block` a warning (and 75 % IP rate
//!   limit, see [`crate::ratelimit::Tightening`]); ≥ `block` a short block; ≥
//!   `long_block` a long block. An action is reported once, when the level rises; it
//!   re-arms when the score decays back below that level's threshold (so an IP whose
//!   1-hour block expired with a score of 90 is blocked again at its next 10 points).
//! - Memory is bounded by [`ScoreBoard::max_entries`]; entries whose score decayed to 0
//!   are dropped by sweeps. When the board is full of live entries, new IPs are judged on
//!   the points of the current request alone (a single request worth a block still
//!   blocks), and nothing is stored for them.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::net::canonical;
use crate::{Millis, MINUTE_MS};

/// How long a weak signal is ignored after it was counted for one IP.
pub const WEAK_SIGNAL_COOLDOWN_MS: Millis = 10 * MINUTE_MS;

/// Default cap on the number of tracked IPs per board.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Minimum time between two full sweeps triggered by a full table: one O(n) pass per
/// second at most, however hard the table is hit.
const SWEEP_INTERVAL_MS: Millis = 1_000;

/// Thresholds and block lengths of a score ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ladder {
    /// Score at which a warning is raised (spec default 50).
    pub warn: u32,
    /// Score at which the IP is blocked for `block_ms` (spec default 100).
    pub block: u32,
    /// Score at which the IP is blocked for `long_block_ms` (spec: 200).
    pub long_block: u32,
    /// Short block length (spec: 1 hour).
    pub block_ms: Millis,
    /// Long block length (spec: 24 hours).
    pub long_block_ms: Millis,
    /// When false, the ladder never blocks (anomaly detection with `auto_block: false`);
    /// warnings are still raised.
    pub auto_block: bool,
}

impl Ladder {
    /// The ladder of spec §7 with the given warning and block thresholds; the long block
    /// starts at twice the block threshold.
    pub fn new(warn: u32, block: u32) -> Self {
        Self {
            warn,
            block,
            long_block: block.saturating_mul(2),
            block_ms: 60 * MINUTE_MS,
            long_block_ms: 24 * 60 * MINUTE_MS,
            auto_block: true,
        }
    }

    /// The level a score falls in.
    pub fn level(&self, score: u32) -> Level {
        if score >= self.long_block && self.auto_block {
            Level::LongBlock
        } else if score >= self.block && self.auto_block {
            Level::Block
        } else if score >= self.warn {
            Level::Warn
        } else {
            Level::Normal
        }
    }
}

impl Default for Ladder {
    fn default() -> Self {
        Self::new(50, 100)
    }
}

/// Where a score stands on the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Log only.
    Normal,
    /// Warning and closer monitoring.
    Warn,
    /// Short block.
    Block,
    /// Long block.
    LongBlock,
}

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Raise a warning (audit event, closer monitoring).
    Warn,
    /// Block the IP for `duration_ms` (record it in the blocklist).
    Block {
        /// Block length.
        duration_ms: Millis,
    },
}

/// The outcome of adding points for one IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Score after decay and the new points.
    pub score: u32,
    /// Points actually added by this call (weak signals in cooldown add nothing).
    pub added: u32,
    /// Current level.
    pub level: Level,
    /// Set only when the level rose with this call.
    pub action: Option<Action>,
}

/// One contribution to a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Points {
    /// Pattern name, used for the weak-signal cooldown.
    pub pattern: &'static str,
    /// Points.
    pub points: u32,
    /// Whether this is a weak signal (see the module docs).
    pub weak: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    score: u32,
    updated_at: Millis,
    level: Level,
    /// Last time each weak pattern was counted. Few weak patterns exist, so a small vec.
    weak_seen: Vec<(&'static str, Millis)>,
}

impl Entry {
    fn decayed(&self, now: Millis) -> u32 {
        let minutes = now.saturating_sub(self.updated_at) / MINUTE_MS;
        let minutes = u32::try_from(minutes).unwrap_or(u32::MAX);
        self.score.saturating_sub(minutes)
    }
}

/// Per-IP scores; see the module docs.
#[derive(Debug, Clone)]
pub struct ScoreBoard {
    ladder: Ladder,
    entries: HashMap<IpAddr, Entry>,
    max_entries: usize,
    last_sweep: Millis,
}

// === impl ScoreBoard ===

impl ScoreBoard {
    /// An empty board with the default size cap.
    pub fn new(ladder: Ladder) -> Self {
        Self::with_capacity(ladder, DEFAULT_MAX_ENTRIES)
    }

    /// An empty board tracking at most `max_entries` IPs (at least 1).
    pub fn with_capacity(ladder: Ladder, max_entries: usize) -> Self {
        Self {
            ladder,
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
            last_sweep: 0,
        }
    }

    /// The ladder in use.
    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// Replaces the ladder (policy reload); scores are kept.
    pub fn set_ladder(&mut self, ladder: Ladder) {
        self.ladder = ladder;
    }

    /// The cap on tracked IPs.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Number of tracked IPs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no IP is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The decayed score of `ip` (0 when unknown). Read-only: usable under a read lock.
    pub fn score(&self, ip: IpAddr, now: Millis) -> u32 {
        self.entries
            .get(&canonical(ip))
            .map_or(0, |e| e.decayed(now))
    }

    /// Adds points for `ip` and returns the verdict. With no points (or only weak
    /// signals in cooldown) the score is only decayed and no action is returned.
    pub fn add(&mut self, ip: IpAddr, points: &[Points], now: Millis) -> Verdict {
        let ip = canonical(ip);
        if !self.entries.contains_key(&ip) {
            let weak = sum(points.iter().filter(|p| p.weak).map(|p| p.points));
            let strong = sum(points.iter().filter(|p| !p.weak).map(|p| p.points));
            let total = weak
                .min(self.ladder.warn.saturating_sub(1))
                .saturating_add(strong);
            if weak == 0 && strong == 0 {
                return Verdict {
                    score: 0,
                    added: 0,
                    level: Level::Normal,
                    action: None,
                };
            }
            if self.entries.len() >= self.max_entries {
                self.sweep_if_due(now);
            }
            if self.entries.len() >= self.max_entries {
                // Full of live entries: judge this request on its own points.
                let level = self.ladder.level(total);
                return Verdict {
                    score: total,
                    added: total,
                    level,
                    action: action_for(&self.ladder, Level::Normal, level),
                };
            }
        }
        let ladder = self.ladder;
        let entry = self.entries.entry(ip).or_insert_with(|| Entry {
            score: 0,
            updated_at: now,
            level: Level::Normal,
            weak_seen: Vec::new(),
        });
        let mut score = entry.decayed(now);
        // The level only ratchets while the score stays inside it: once decay drops the
        // score below a threshold, crossing it again reports the action again.
        let before = entry.level.min(ladder.level(score));
        let mut weak = 0u32;
        let mut strong = 0u32;
        for p in points {
            if p.points == 0 {
                continue;
            }
            if p.weak {
                match entry
                    .weak_seen
                    .iter_mut()
                    .find(|(name, _)| *name == p.pattern)
                {
                    Some((_, at)) if now.saturating_sub(*at) < WEAK_SIGNAL_COOLDOWN_MS => continue,
                    Some((_, at)) => *at = now,
                    None => entry.weak_seen.push((p.pattern, now)),
                }
                weak = weak.saturating_add(p.points);
            } else {
                strong = strong.saturating_add(p.points);
            }
        }
        let decayed = score;
        // Weak points fill the score up to just below the warning threshold, never past.
        let weak_cap = score.max(ladder.warn.saturating_sub(1));
        score = score.saturating_add(weak).min(weak_cap);
        score = score.saturating_add(strong);
        let added = score - decayed;
        // The decay clock restarts only when points are added ("without new detections").
        if added > 0 || entry.score != score {
            entry.updated_at = if added > 0 {
                now
            } else {
                // Keep the partial minute: move the clock by whole minutes only.
                let minutes = u64::from(entry.score.saturating_sub(score));
                entry
                    .updated_at
                    .saturating_add(minutes.saturating_mul(MINUTE_MS))
            };
        }
        entry.score = score;
        let level = ladder.level(score);
        let action = action_for(&ladder, before, level);
        entry.level = level;
        Verdict {
            score,
            added,
            level,
            action,
        }
    }

    /// Forgets `ip` (manual unblock).
    pub fn reset(&mut self, ip: IpAddr) {
        self.entries.remove(&canonical(ip));
    }

    /// Drops every entry whose score decayed to 0 and whose weak-signal cooldowns are
    /// over. Call it from a periodic maintenance tick; it also runs by itself when the
    /// board is full (at most once per second).
    pub fn sweep(&mut self, now: Millis) {
        self.last_sweep = now;
        self.entries.retain(|_, e| {
            e.decayed(now) > 0
                || e.weak_seen
                    .iter()
                    .any(|(_, at)| now.saturating_sub(*at) < WEAK_SIGNAL_COOLDOWN_MS)
        });
    }

    fn sweep_if_due(&mut self, now: Millis) {
        if now.saturating_sub(self.last_sweep) >= SWEEP_INTERVAL_MS || now < self.last_sweep {
            self.sweep(now);
        }
    }
}

fn action_for(ladder: &Ladder, before: Level, now: Level) -> Option<Action> {
    if now <= before {
        return None;
    }
    match now {
        Level::Normal => None,
        Level::Warn => Some(Action::Warn),
        Level::Block => Some(Action::Block {
            duration_ms: ladder.block_ms,
        }),
        Level::LongBlock => Some(Action::Block {
            duration_ms: ladder.long_block_ms,
        }),
    }
}

fn sum(it: impl Iterator<Item = u32>) -> u32 {
    it.fold(0u32, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = "203.0.113.9";

    fn ip() -> IpAddr {
        IP.parse().unwrap()
    }

    fn strong(points: u32) -> Points {
        Points {
            pattern: "sql_injection",
            points,
            weak: false,
        }
    }

    #[test]
    fn ladder_levels_and_actions() {
        let mut b = ScoreBoard::new(Ladder::default());
        let t0 = 1_000_000;
        let v = b.add(ip(), &[strong(20)], t0);
        assert_eq!((v.score, v.level, v.action), (20, Level::Normal, None));
        let v = b.add(ip(), &[strong(30)], t0);
        assert_eq!(
            (v.score, v.level, v.action),
            (50, Level::Warn, Some(Action::Warn))
        );
        let v = b.add(ip(), &[strong(10)], t0);
        assert_eq!(v.action, None, "warning is reported once");
        let v = b.add(ip(), &[strong(40)], t0);
        assert_eq!(
            v.action,
            Some(Action::Block {
                duration_ms: 60 * MINUTE_MS
            })
        );
        let v = b.add(ip(), &[strong(100)], t0);
        assert_eq!(
            v.action,
            Some(Action::Block {
                duration_ms: 24 * 60 * MINUTE_MS
            })
        );
        assert_eq!(v.level, Level::LongBlock);
        let v = b.add(ip(), &[strong(100)], t0);
        assert_eq!(v.action, None);
    }

    #[test]
    fn decays_one_point_per_minute() {
        let mut b = ScoreBoard::new(Ladder::default());
        let t0 = 10 * MINUTE_MS;
        b.add(ip(), &[strong(60)], t0);
        assert_eq!(b.score(ip(), t0 + 59_999), 60);
        assert_eq!(b.score(ip(), t0 + MINUTE_MS), 59);
        assert_eq!(b.score(ip(), t0 + 30 * MINUTE_MS), 30);
        assert_eq!(b.score(ip(), t0 + 600 * MINUTE_MS), 0);
        // Re-arm: after decaying below warn, crossing warn again warns again.
        let v = b.add(ip(), &[], t0 + 20 * MINUTE_MS);
        assert_eq!(v.score, 40);
        let v = b.add(ip(), &[strong(10)], t0 + 20 * MINUTE_MS);
        assert_eq!(v.action, Some(Action::Warn));
    }

    #[test]
    fn decay_only_call_keeps_partial_minute() {
        let mut b = ScoreBoard::new(Ladder::default());
        b.add(ip(), &[strong(10)], 0);
        // 90 s later: one point decayed, half a minute pending.
        assert_eq!(b.add(ip(), &[], 90_000).score, 9);
        // 30 s after that the pending half minute completes.
        assert_eq!(b.score(ip(), 120_000), 8);
    }

    #[test]
    fn weak_signals_cannot_block_alone() {
        let mut b = ScoreBoard::new(Ladder::default());
        let weak = Points {
            pattern: "empty_user_agent",
            points: 10,
            weak: true,
        };
        let mut max = 0;
        // One request per second for 3 hours.
        for s in 0..(3 * 3600u64) {
            let v = b.add(ip(), &[weak], s * 1000);
            max = max.max(v.score);
            assert!(v.level < Level::Block);
        }
        assert!(max <= 10, "max {max}");
    }

    #[test]
    fn many_weak_signals_stay_below_warning() {
        let mut b = ScoreBoard::new(Ladder::default());
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let weak: Vec<Points> = names
            .iter()
            .map(|n| Points {
                pattern: n,
                points: 15,
                weak: true,
            })
            .collect();
        for m in 0..600u64 {
            let v = b.add(ip(), &weak, m * MINUTE_MS);
            assert!(v.score < 50, "minute {m}: {}", v.score);
            assert_eq!(v.action, None);
        }
        // But they do add to a real attack.
        let mut both = weak.clone();
        both.push(strong(60));
        let v = b.add(ip(), &both, 600 * MINUTE_MS);
        assert!(v.score >= 100, "{}", v.score);
        // A new IP whose first request is only weak signals: capped as well.
        let v = b.add("192.0.2.1".parse().unwrap(), &weak, 0);
        assert_eq!(v.score, 49);
    }

    #[test]
    fn auto_block_off_never_blocks() {
        let ladder = Ladder {
            auto_block: false,
            ..Ladder::default()
        };
        let mut b = ScoreBoard::new(ladder);
        let v = b.add(ip(), &[strong(500)], 0);
        assert_eq!((v.level, v.action), (Level::Warn, Some(Action::Warn)));
    }

    #[test]
    fn bounded_memory() {
        let mut b = ScoreBoard::with_capacity(Ladder::default(), 10);
        for i in 0..50u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            let v = b.add(ip, &[strong(150)], 0);
            assert_eq!(v.level, Level::Block, "untracked IPs still judged");
        }
        assert_eq!(b.len(), 10);
        // Everything decays after 150 minutes; a new IP then fits again.
        let v = b.add(IpAddr::from([10, 0, 1, 1]), &[strong(1)], 151 * MINUTE_MS);
        assert_eq!(v.score, 1);
        assert_eq!(b.len(), 1);
    }
}
