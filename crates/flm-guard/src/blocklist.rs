//! The automatic IP blocklist (spec 40-security §6): failure counting, escalation,
//! manual management, and a snapshot/restore API for persistence.
//!
//! Escalation, with the policy's thresholds (defaults in brackets):
//!
//! | failures | block |
//! |---|---|
//! | `max_failures` (5) | `block_duration_minutes` (30 min) |
//! | 2 × `max_failures` (10) | 24 hours |
//! | `permanent_block_threshold` (20; 0 = never) | permanent, released only by hand |
//!
//! The tier is derived from the failure count, so restoring a snapshot restores the
//! escalation state too. A new block is reported only when a failure moves the IP to a
//! higher tier; the proxy persists the table immediately then (spec: "whenever a new
//! block is created").
//!
//! **Bounded memory.** A counter of an IP that is not blocked expires
//! `failure_window` (24 h) after its last failure or the end of its last block, which
//! also keeps the escalation window wide enough for the 24-hour tier. Expired entries
//! are swept at most once a minute on insert and by [`Blocklist::sweep`]. At most
//! `max_entries` IPs are tracked; when the table is full of live entries, failures of
//! new IPs are not counted (reported as `tracked: false`) — the per-IP rate limit still
//! applies to them, and existing blocks are never evicted to make room.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::canonical;
use crate::{Millis, MINUTE_MS};

const HOUR_MS: Millis = 60 * MINUTE_MS;
const SWEEP_INTERVAL_MS: Millis = MINUTE_MS;
const FULL_SWEEP_INTERVAL_MS: Millis = 1_000;

/// Blocklist thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocklistConfig {
    /// Failures that start the first (short) block. At least 1.
    pub max_failures: u32,
    /// Length of the short block.
    pub block_duration_ms: Millis,
    /// Failures that start the long block (spec: 10).
    pub long_block_failures: u32,
    /// Length of the long block (spec: 24 h).
    pub long_block_duration_ms: Millis,
    /// Failures that make the block permanent; 0 = never.
    pub permanent_threshold: u32,
    /// How long an unblocked IP's failures are remembered.
    pub failure_window_ms: Millis,
    /// Cap on tracked IPs.
    pub max_entries: usize,
}

impl BlocklistConfig {
    /// The ladder of spec §6 from the policy's `ip_blocklist` fields: the long block
    /// starts at twice `max_failures`.
    pub fn from_policy(
        max_failures: u32,
        block_duration_minutes: u32,
        permanent_threshold: u32,
    ) -> Self {
        let max_failures = max_failures.max(1);
        Self {
            max_failures,
            block_duration_ms: Millis::from(block_duration_minutes) * MINUTE_MS,
            long_block_failures: max_failures.saturating_mul(2),
            long_block_duration_ms: 24 * HOUR_MS,
            permanent_threshold,
            failure_window_ms: 24 * HOUR_MS,
            max_entries: 100_000,
        }
    }

    fn tier(&self, failures: u32) -> Tier {
        if self.permanent_threshold > 0 && failures >= self.permanent_threshold {
            Tier::Permanent
        } else if failures >= self.long_block_failures {
            Tier::Long
        } else if failures >= self.max_failures.max(1) {
            Tier::Short
        } else {
            Tier::None
        }
    }
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        Self::from_policy(5, 30, 20)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    None,
    Short,
    Long,
    Permanent,
}

/// One IP's record, as persisted in `ip_blocklist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// The client address.
    pub ip: IpAddr,
    /// Failures counted in the current window.
    pub failure_count: u32,
    /// First failure of the current window, Unix ms.
    pub first_failure_at: Millis,
    /// End of the current or last temporary block, Unix ms.
    pub blocked_until: Option<Millis>,
    /// Permanent block (manual release only).
    pub permanent: bool,
    /// Last failure or refused attempt, Unix ms.
    pub last_attempt: Millis,
}

impl BlockEntry {
    /// Whether this entry blocks its IP at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.permanent || self.blocked_until.is_some_and(|u| u > now)
    }
}

/// A block that a call just started (or lengthened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NewBlock {
    /// End of the block; `None` when permanent.
    pub until: Option<Millis>,
    /// Whether the block is permanent.
    pub permanent: bool,
}

/// The result of [`Blocklist::record_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailureOutcome {
    /// Failures now counted for the IP.
    pub failure_count: u32,
    /// Set when this failure started a new block (or escalated one): persist now.
    pub new_block: Option<NewBlock>,
    /// Whether the IP is blocked after this call.
    pub blocked: bool,
    /// False when the table was full and the failure could not be counted.
    pub tracked: bool,
}

/// An active block, as returned by [`Blocklist::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActiveBlock {
    /// End of the block; `None` when permanent.
    pub until: Option<Millis>,
    /// Whether the block is permanent.
    pub permanent: bool,
}

/// The blocklist; see the module docs.
#[derive(Debug, Clone)]
pub struct Blocklist {
    config: BlocklistConfig,
    entries: HashMap<IpAddr, BlockEntry>,
    last_sweep: Millis,
}

// === impl Blocklist ===

impl Blocklist {
    /// An empty blocklist.
    pub fn new(config: BlocklistConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            last_sweep: 0,
        }
    }

    /// A blocklist loaded from persisted entries (duplicates: the last one wins; entries
    /// beyond `max_entries` are dropped, permanent ones first kept).
    pub fn from_entries(
        config: BlocklistConfig,
        entries: impl IntoIterator<Item = BlockEntry>,
    ) -> Self {
        let mut list = Self::new(config);
        let mut all: Vec<BlockEntry> = entries.into_iter().collect();
        // Permanent entries first, so the cap never drops them in favour of counters.
        all.sort_by_key(|e| !e.permanent);
        for mut e in all {
            e.ip = canonical(e.ip);
            let exists = list.entries.contains_key(&e.ip);
            if exists || list.entries.len() < list.config.max_entries.max(1) {
                list.entries.insert(e.ip, e);
            }
        }
        list
    }

    /// The thresholds.
    pub fn config(&self) -> &BlocklistConfig {
        &self.config
    }

    /// Replaces the thresholds (policy reload). Existing blocks keep their end time;
    /// new thresholds apply from the next failure.
    pub fn set_config(&mut self, config: BlocklistConfig) {
        self.config = config;
    }

    /// Whether `ip` is blocked at `now`. Read-only: safe under a read lock on the hot
    /// path; one hash lookup.
    pub fn is_blocked(&self, ip: IpAddr, now: Millis) -> bool {
        self.entries
            .get(&canonical(ip))
            .is_some_and(|e| e.is_active(now))
    }

    /// The active block of `ip`, if any (for the `403 ip_blocked` details).
    pub fn status(&self, ip: IpAddr, now: Millis) -> Option<ActiveBlock> {
        let e = self.entries.get(&canonical(ip))?;
        e.is_active(now).then_some(ActiveBlock {
            until: if e.permanent { None } else { e.blocked_until },
            permanent: e.permanent,
        })
    }

    /// The record of `ip`, if tracked.
    pub fn get(&self, ip: IpAddr) -> Option<&BlockEntry> {
        self.entries.get(&canonical(ip))
    }

    /// Counts one failure (an authentication failure, or an intrusion/anomaly block
    /// expressed as a failure) and escalates when a threshold is reached.
    pub fn record_failure(&mut self, ip: IpAddr, now: Millis) -> FailureOutcome {
        self.record(ip, now, None)
    }

    /// Records a block decided elsewhere (intrusion or anomaly ladder): one failure is
    /// counted, then the IP is blocked for at least `duration_ms`. `new_block` is set
    /// when this lengthened the block or escalated it.
    pub fn impose(&mut self, ip: IpAddr, duration_ms: Millis, now: Millis) -> FailureOutcome {
        self.record(ip, now, Some(duration_ms))
    }

    fn record(&mut self, ip: IpAddr, now: Millis, imposed: Option<Millis>) -> FailureOutcome {
        let ip = canonical(ip);
        if !self.entries.contains_key(&ip) {
            self.maybe_sweep(now);
            if self.entries.len() >= self.config.max_entries.max(1) {
                return FailureOutcome {
                    failure_count: 0,
                    new_block: None,
                    blocked: false,
                    tracked: false,
                };
            }
        }
        let config = self.config;
        let e = self.entries.entry(ip).or_insert_with(|| BlockEntry {
            ip,
            failure_count: 0,
            first_failure_at: now,
            blocked_until: None,
            permanent: false,
            last_attempt: now,
        });
        // An expired window that was not swept yet starts over.
        if !e.permanent && now >= expiry(e, &config) {
            e.failure_count = 0;
            e.first_failure_at = now;
            e.blocked_until = None;
        }
        let was_permanent = e.permanent;
        let before_tier = config.tier(e.failure_count);
        let before_until = e.blocked_until.filter(|u| *u > now);
        e.failure_count = e.failure_count.saturating_add(1);
        e.last_attempt = now;
        let tier = config.tier(e.failure_count);
        let mut until = before_until;
        if tier > before_tier {
            match tier {
                Tier::Permanent => e.permanent = true,
                Tier::Long => {
                    until = until.max(Some(now.saturating_add(config.long_block_duration_ms)))
                }
                Tier::Short => {
                    until = until.max(Some(now.saturating_add(config.block_duration_ms)))
                }
                Tier::None => {}
            }
        }
        if let Some(d) = imposed {
            until = until.max(Some(now.saturating_add(d)));
        }
        let new_block = if e.permanent && !was_permanent {
            Some(NewBlock {
                until: None,
                permanent: true,
            })
        } else if !e.permanent && until > before_until {
            Some(NewBlock {
                until,
                permanent: false,
            })
        } else {
            None
        };
        if until.is_some() {
            e.blocked_until = until;
        }
        FailureOutcome {
            failure_count: e.failure_count,
            new_block,
            blocked: e.is_active(now),
            tracked: true,
        }
    }

    /// Notes a refused attempt by a blocked IP (keeps `last_attempt` current for the
    /// list view). Does not count as a failure.
    pub fn note_attempt(&mut self, ip: IpAddr, now: Millis) {
        if let Some(e) = self.entries.get_mut(&canonical(ip)) {
            e.last_attempt = e.last_attempt.max(now);
        }
    }

    /// Blocks `ip` by hand: until `until`, or permanently with `None`.
    pub fn block(&mut self, ip: IpAddr, until: Option<Millis>, now: Millis) {
        let ip = canonical(ip);
        let e = self.entries.entry(ip).or_insert_with(|| BlockEntry {
            ip,
            failure_count: 0,
            first_failure_at: now,
            blocked_until: None,
            permanent: false,
            last_attempt: now,
        });
        match until {
            None => e.permanent = true,
            Some(u) => e.blocked_until = e.blocked_until.max(Some(u)),
        }
    }

    /// Releases `ip` completely (block, permanent flag and failure count). Returns
    /// whether it was tracked.
    pub fn unblock(&mut self, ip: IpAddr) -> bool {
        self.entries.remove(&canonical(ip)).is_some()
    }

    /// Removes every entry except permanent blocks (spec: `clear` keeps permanent
    /// blocks). Returns how many were removed.
    pub fn clear(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.permanent);
        before - self.entries.len()
    }

    /// Every entry, sorted by address: the snapshot to persist.
    pub fn entries(&self) -> Vec<BlockEntry> {
        let mut v: Vec<BlockEntry> = self.entries.values().cloned().collect();
        v.sort_by_key(|e| e.ip);
        v
    }

    /// The entries that block at `now`, sorted by address (the `list` command).
    pub fn active(&self, now: Millis) -> Vec<BlockEntry> {
        let mut v: Vec<BlockEntry> = self
            .entries
            .values()
            .filter(|e| e.is_active(now))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.ip);
        v
    }

    /// Number of tracked IPs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops expired entries (see the module docs). Returns how many were removed.
    pub fn sweep(&mut self, now: Millis) -> usize {
        self.last_sweep = now;
        let config = self.config;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.permanent || now < expiry(e, &config));
        before - self.entries.len()
    }

    fn maybe_sweep(&mut self, now: Millis) {
        let due = now.saturating_sub(self.last_sweep);
        let full = self.entries.len() >= self.config.max_entries.max(1);
        if due >= SWEEP_INTERVAL_MS
            || (full && due >= FULL_SWEEP_INTERVAL_MS)
            || now < self.last_sweep
        {
            self.sweep(now);
        }
    }
}

/// When a non-permanent entry may be forgotten.
fn expiry(e: &BlockEntry, config: &BlocklistConfig) -> Millis {
    let last = e.last_attempt.max(e.blocked_until.unwrap_or(0));
    last.saturating_add(config.failure_window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn escalation_ladder() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let a = ip("198.51.100.1");
        for i in 1..=4 {
            let o = bl.record_failure(a, T0);
            assert_eq!((o.failure_count, o.new_block, o.blocked), (i, None, false));
        }
        let o = bl.record_failure(a, T0);
        assert_eq!(
            o.new_block,
            Some(NewBlock {
                until: Some(T0 + 30 * MINUTE_MS),
                permanent: false
            })
        );
        assert!(bl.is_blocked(a, T0 + 30 * MINUTE_MS - 1));
        assert!(!bl.is_blocked(a, T0 + 30 * MINUTE_MS));
        // Failures 6-9 after the block: warning only.
        let t1 = T0 + 31 * MINUTE_MS;
        for _ in 6..=9 {
            let o = bl.record_failure(a, t1);
            assert_eq!((o.new_block, o.blocked), (None, false));
        }
        let o = bl.record_failure(a, t1);
        assert_eq!(o.failure_count, 10);
        assert_eq!(o.new_block.and_then(|b| b.until), Some(t1 + 24 * HOUR_MS));
        // 11-19 while blocked: no new block.
        for _ in 11..=19 {
            assert_eq!(bl.record_failure(a, t1).new_block, None);
        }
        let o = bl.record_failure(a, t1);
        assert_eq!(
            o.new_block,
            Some(NewBlock {
                until: None,
                permanent: true
            })
        );
        assert!(bl.is_blocked(a, Millis::MAX));
        assert_eq!(
            bl.record_failure(a, t1).new_block,
            None,
            "already permanent"
        );
        assert_eq!(
            bl.status(a, t1),
            Some(ActiveBlock {
                until: None,
                permanent: true
            })
        );
    }

    #[test]
    fn custom_thresholds_and_no_permanent() {
        let mut bl = Blocklist::new(BlocklistConfig::from_policy(2, 1, 0));
        let a = ip("198.51.100.2");
        bl.record_failure(a, T0);
        assert_eq!(
            bl.record_failure(a, T0).new_block.and_then(|b| b.until),
            Some(T0 + MINUTE_MS)
        );
        for _ in 0..100 {
            bl.record_failure(a, T0);
        }
        assert!(!bl.get(a).unwrap().permanent);
    }

    #[test]
    fn impose_blocks_and_counts_one_failure() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let a = ip("2001:db8::1");
        let o = bl.impose(a, HOUR_MS, T0);
        assert_eq!(o.failure_count, 1);
        assert_eq!(o.new_block.and_then(|b| b.until), Some(T0 + HOUR_MS));
        assert!(bl.is_blocked(a, T0 + HOUR_MS - 1));
        // A shorter imposed block does not shorten it, and is not "new".
        assert_eq!(bl.impose(a, MINUTE_MS, T0).new_block, None);
        // A longer one is.
        assert!(bl.impose(a, 24 * HOUR_MS, T0).new_block.is_some());
    }

    #[test]
    fn manual_management() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        bl.block(a, None, T0);
        bl.block(b, Some(T0 + 1000), T0);
        bl.record_failure(c, T0);
        assert!(bl.is_blocked(a, T0) && bl.is_blocked(b, T0) && !bl.is_blocked(c, T0));
        assert_eq!(bl.active(T0).len(), 2);
        assert_eq!(bl.clear(), 2);
        assert!(bl.is_blocked(a, T0), "clear keeps permanent blocks");
        assert!(bl.unblock(a));
        assert!(!bl.is_blocked(a, T0));
        assert!(!bl.unblock(a));
        assert!(bl.is_empty());
    }

    #[test]
    fn mapped_addresses_are_the_same_ip() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        bl.block(ip("::ffff:192.0.2.1"), None, T0);
        assert!(bl.is_blocked(ip("192.0.2.1"), T0));
    }

    #[test]
    fn counters_expire_after_the_window() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let a = ip("198.51.100.3");
        for _ in 0..4 {
            bl.record_failure(a, T0);
        }
        let later = T0 + 24 * HOUR_MS;
        assert_eq!(
            bl.record_failure(a, later).failure_count,
            1,
            "window restarted"
        );
        assert_eq!(bl.sweep(later + 24 * HOUR_MS), 1);
        assert!(bl.is_empty());
        // Counters of blocked IPs survive their block plus the window.
        for _ in 0..10 {
            bl.record_failure(a, T0);
        }
        assert_eq!(bl.sweep(T0 + 47 * HOUR_MS), 0);
        assert_eq!(bl.sweep(T0 + 48 * HOUR_MS), 1);
    }

    #[test]
    fn bounded_memory() {
        let config = BlocklistConfig {
            max_entries: 3,
            ..BlocklistConfig::default()
        };
        let mut bl = Blocklist::new(config);
        for i in 0..3u8 {
            assert!(bl.record_failure(IpAddr::from([10, 0, 0, i]), T0).tracked);
        }
        let o = bl.record_failure(ip("10.0.1.1"), T0);
        assert!(!o.tracked);
        assert_eq!(bl.len(), 3);
        // Once the counters expire, there is room again.
        assert!(bl.record_failure(ip("10.0.1.1"), T0 + 25 * HOUR_MS).tracked);
        assert_eq!(bl.len(), 1);
    }

    #[test]
    fn snapshot_restore_round_trip() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let a = ip("198.51.100.9");
        for _ in 0..5 {
            bl.record_failure(a, T0);
        }
        bl.block(ip("2001:db8::9"), None, T0);
        let snap = bl.entries();
        let json = serde_json::to_string(&snap).unwrap();
        let back: Vec<BlockEntry> = serde_json::from_str(&json).unwrap();
        let restored = Blocklist::from_entries(BlocklistConfig::default(), back);
        assert_eq!(restored.entries(), snap);
        assert!(restored.is_blocked(a, T0 + 1));
        // Escalation state survives: 5 more failures reach the 24 h tier.
        let mut restored = restored;
        let t1 = T0 + HOUR_MS;
        for _ in 0..4 {
            restored.record_failure(a, t1);
        }
        assert_eq!(
            restored
                .record_failure(a, t1)
                .new_block
                .and_then(|b| b.until),
            Some(t1 + 24 * HOUR_MS)
        );
    }

    #[test]
    fn restore_keeps_permanent_entries_under_the_cap() {
        let config = BlocklistConfig {
            max_entries: 1,
            ..BlocklistConfig::default()
        };
        let counter = BlockEntry {
            ip: ip("10.0.0.1"),
            failure_count: 1,
            first_failure_at: T0,
            blocked_until: None,
            permanent: false,
            last_attempt: T0,
        };
        let perm = BlockEntry {
            ip: ip("10.0.0.2"),
            permanent: true,
            ..counter.clone()
        };
        let bl = Blocklist::from_entries(config, vec![counter, perm]);
        assert_eq!(bl.len(), 1);
        assert!(bl.is_blocked(ip("10.0.0.2"), T0));
    }
}
