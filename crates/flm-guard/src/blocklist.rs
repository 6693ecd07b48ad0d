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
//! escalation state too. A new block is reported only when a failure moves the entry
//! to a higher tier; the proxy persists the table immediately then (spec: "whenever a
//! new block is created").
//!
//! **Entries are networks.** An entry is an [`IpNet`]: a single address (the usual
//! case), or a range — added by hand, or an IPv6 *aggregate* (below). A lookup is one
//! hash probe for the address plus one per prefix length present in the table (in
//! practice /64 and /48): O(1).
//!
//! **IPv6 aggregation.** One IPv6 subscriber owns at least a /64 and often a /48, so
//! counting per address lets it spread failures over 2^64 addresses, never reach a
//! threshold and fill the table. When [`BlocklistConfig::aggregate_64_at`] addresses of
//! one /64 have entries, further failures from that /64 are counted on one /64 entry;
//! when [`BlocklistConfig::aggregate_48_at`] entries (addresses or /64 aggregates) lie
//! in one /48, on one /48 entry. An aggregate climbs the same ladder and its block
//! covers the whole prefix, but it never becomes permanent by itself (the 24-hour tier
//! is its ceiling): a whole network is banned for good only by hand. An address that
//! already has its own entry keeps counting on it.
//!
//! **Bounded memory, failing closed.** A counter that is not blocked expires
//! `failure_window` (24 h) after its last failure or the end of its last block, which
//! also keeps the escalation window wide enough for the 24-hour tier. Expired entries
//! are swept at most once a minute on insert and by [`Blocklist::sweep`]. At most
//! `max_entries` entries are kept; when the table is full, a new offender makes room by
//! evicting the least severe entries — counters that never led to a ban, oldest first,
//! then expired bans, oldest first (a batch of 1/64 of the cap, so a full table costs
//! one scan per many inserts). Active bans are never evicted; only a table full of
//! active bans leaves a failure uncounted (`tracked: false`), and with aggregation that
//! takes as many offending networks as there are entries.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::{canonical, IpNet};
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
    /// Cap on entries.
    pub max_entries: usize,
    /// Address entries in one IPv6 /64 from which the /64 is counted as one (0 = never).
    pub aggregate_64_at: u32,
    /// Entries in one IPv6 /48 from which the /48 is counted as one (0 = never).
    pub aggregate_48_at: u32,
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
            aggregate_64_at: 8,
            aggregate_48_at: 64,
        }
    }

    fn tier(&self, failures: u32, aggregate: bool) -> Tier {
        if !aggregate && self.permanent_threshold > 0 && failures >= self.permanent_threshold {
            Tier::Permanent
        } else if failures >= self.long_block_failures {
            Tier::Long
        } else if failures >= self.max_failures.max(1) {
            Tier::Short
        } else {
            Tier::None
        }
    }

    fn cap(&self) -> usize {
        self.max_entries.max(1)
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

/// One entry, as persisted in `ip_blocklist` (`ip` holds the network's text: an
/// address, or `addr/prefix` for a range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// The client address, or the network of a range entry.
    pub net: IpNet,
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
    fn new(net: IpNet, now: Millis) -> Self {
        Self {
            net,
            failure_count: 0,
            first_failure_at: now,
            blocked_until: None,
            permanent: false,
            last_attempt: now,
        }
    }

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
    /// The entry the failure was counted on (the address, or its /64 or /48
    /// aggregate); the one to persist.
    pub entry: IpNet,
    /// Failures now counted on that entry.
    pub failure_count: u32,
    /// Set when this failure started a new block (or escalated one): persist now.
    pub new_block: Option<NewBlock>,
    /// Whether the IP is blocked after this call.
    pub blocked: bool,
    /// False when the table was full of active bans and the failure could not be
    /// counted.
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
    entries: HashMap<IpNet, BlockEntry>,
    /// How many range entries there are per (is IPv6, prefix length): the lengths a
    /// lookup must probe.
    range_lens: BTreeMap<(bool, u8), usize>,
    /// How many entries lie inside each IPv6 /64 (addresses) and /48 (addresses and
    /// /64 ranges): the aggregation trigger.
    members: HashMap<IpNet, u32>,
    last_sweep: Millis,
    /// When a full table last had nothing to evict: the scan is not repeated for a
    /// second, so failures against a table full of bans cost no more than a lookup.
    no_room_at: Option<Millis>,
}

fn v6_net(ip: IpAddr, prefix: u8) -> Option<IpNet> {
    match canonical(ip) {
        IpAddr::V6(_) => IpNet::new(ip, prefix).ok(),
        IpAddr::V4(_) => None,
    }
}

fn is_v6(net: &IpNet) -> bool {
    net.addr().is_ipv6()
}

/// The IPv6 networks whose member count an entry adds to.
fn parents(net: &IpNet) -> [Option<IpNet>; 2] {
    if !is_v6(net) {
        return [None, None];
    }
    match net.prefix_len() {
        128 => [v6_net(net.addr(), 64), v6_net(net.addr(), 48)],
        64 => [None, v6_net(net.addr(), 48)],
        _ => [None, None],
    }
}

// === impl Blocklist ===

impl Blocklist {
    /// An empty blocklist.
    pub fn new(config: BlocklistConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            range_lens: BTreeMap::new(),
            members: HashMap::new(),
            last_sweep: 0,
            no_room_at: None,
        }
    }

    /// A blocklist loaded from persisted entries (duplicates: the last one wins).
    /// Beyond `max_entries`, permanent blocks are kept first, then active blocks, then
    /// the most recent counters.
    pub fn from_entries(
        config: BlocklistConfig,
        entries: impl IntoIterator<Item = BlockEntry>,
    ) -> Self {
        let mut list = Self::new(config);
        let mut all: Vec<(usize, BlockEntry)> = entries.into_iter().enumerate().collect();
        // The last duplicate wins: keep the highest index per network.
        let mut last: HashMap<IpNet, usize> = HashMap::new();
        for (i, e) in &all {
            last.insert(e.net, *i);
        }
        all.retain(|(i, e)| last.get(&e.net) == Some(i));
        let now = all.iter().map(|(_, e)| e.last_attempt).max().unwrap_or(0);
        all.sort_by_key(|(_, e)| {
            (
                !e.permanent,
                !e.is_active(now),
                std::cmp::Reverse(e.last_attempt),
            )
        });
        for (_, e) in all.into_iter().take(config.cap()) {
            list.insert_entry(e);
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

    /// The entry that blocks `ip` at `now`: its own, or a range containing it.
    fn active_for(&self, ip: IpAddr, now: Millis) -> Option<&BlockEntry> {
        let ip = canonical(ip);
        if let Some(e) = self.entries.get(&IpNet::host(ip)) {
            if e.is_active(now) {
                return Some(e);
            }
        }
        let v6 = ip.is_ipv6();
        self.range_lens
            .keys()
            .filter(|(fam, _)| *fam == v6)
            .filter_map(|(_, len)| IpNet::new(ip, *len).ok())
            .filter_map(|n| self.entries.get(&n))
            .find(|e| e.is_active(now))
    }

    /// Whether `ip` is blocked at `now` (by its own entry or a range). Read-only: safe
    /// under a read lock on the hot path.
    pub fn is_blocked(&self, ip: IpAddr, now: Millis) -> bool {
        self.active_for(ip, now).is_some()
    }

    /// The active block of `ip`, if any (for the `403 ip_blocked` details).
    pub fn status(&self, ip: IpAddr, now: Millis) -> Option<ActiveBlock> {
        let e = self.active_for(ip, now)?;
        Some(ActiveBlock {
            until: if e.permanent { None } else { e.blocked_until },
            permanent: e.permanent,
        })
    }

    /// The record of the single address `ip`, if tracked.
    pub fn get(&self, ip: IpAddr) -> Option<&BlockEntry> {
        self.entries.get(&IpNet::host(ip))
    }

    /// The record of an entry (address or range), if tracked.
    pub fn get_net(&self, net: &IpNet) -> Option<&BlockEntry> {
        self.entries.get(net)
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

    /// Where a failure of `ip` is counted: its own entry if it has one, else an
    /// existing /48 or /64 aggregate, else a new aggregate once its prefix has enough
    /// entries, else a new address entry.
    fn target(&self, ip: IpAddr) -> IpNet {
        let host = IpNet::host(ip);
        if self.entries.contains_key(&host) {
            return host;
        }
        let (Some(n64), Some(n48)) = (v6_net(ip, 64), v6_net(ip, 48)) else {
            return host;
        };
        if self.entries.contains_key(&n48) {
            return n48;
        }
        if self.entries.contains_key(&n64) {
            return n64;
        }
        let count = |n: &IpNet| self.members.get(n).copied().unwrap_or(0);
        let at48 = self.config.aggregate_48_at;
        if at48 > 0 && count(&n48).saturating_add(1) >= at48 {
            return n48;
        }
        let at64 = self.config.aggregate_64_at;
        if at64 > 0 && count(&n64).saturating_add(1) >= at64 {
            return n64;
        }
        host
    }

    fn record(&mut self, ip: IpAddr, now: Millis, imposed: Option<Millis>) -> FailureOutcome {
        let mut net = self.target(ip);
        if !self.entries.contains_key(&net) {
            self.maybe_sweep(now);
            // The sweep may have dropped the entries that made the target an aggregate.
            net = self.target(ip);
            if !self.entries.contains_key(&net) && !self.make_room(now) {
                return FailureOutcome {
                    entry: net,
                    failure_count: 0,
                    new_block: None,
                    blocked: self.is_blocked(ip, now),
                    tracked: false,
                };
            }
            self.insert_entry(BlockEntry::new(net, now));
        }
        let config = self.config;
        let aggregate = !net.is_host();
        let Some(e) = self.entries.get_mut(&net) else {
            // Inserted just above; unreachable, and counted as untracked if it were.
            return FailureOutcome {
                entry: net,
                failure_count: 0,
                new_block: None,
                blocked: false,
                tracked: false,
            };
        };
        // An expired window that was not swept yet starts over.
        if !e.permanent && now >= expiry(e, &config) {
            e.failure_count = 0;
            e.first_failure_at = now;
            e.blocked_until = None;
        }
        let was_permanent = e.permanent;
        let before_tier = config.tier(e.failure_count, aggregate);
        let before_until = e.blocked_until.filter(|u| *u > now);
        e.failure_count = e.failure_count.saturating_add(1);
        e.last_attempt = now;
        let tier = config.tier(e.failure_count, aggregate);
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
        let failure_count = e.failure_count;
        FailureOutcome {
            entry: net,
            failure_count,
            new_block,
            blocked: self.is_blocked(ip, now),
            tracked: true,
        }
    }

    /// Frees one slot if the table is full: sweeps, then evicts the least severe
    /// entries. False only when every entry is an active ban.
    fn make_room(&mut self, now: Millis) -> bool {
        let cap = self.config.cap();
        if self.entries.len() < cap {
            return true;
        }
        if now.saturating_sub(self.last_sweep) >= FULL_SWEEP_INTERVAL_MS || now < self.last_sweep {
            self.sweep(now);
            if self.entries.len() < cap {
                return true;
            }
        }
        if let Some(t) = self.no_room_at {
            if now >= t && now - t < FULL_SWEEP_INTERVAL_MS {
                return false;
            }
        }
        let batch = (cap / 64).max(1);
        // Severity order: address counters before aggregates, never-banned before
        // expired bans, oldest first.
        let mut candidates: Vec<((bool, bool, Millis), IpNet)> = self
            .entries
            .values()
            .filter(|e| !e.is_active(now))
            .map(|e| {
                (
                    (!e.net.is_host(), e.blocked_until.is_some(), e.last_attempt),
                    e.net,
                )
            })
            .collect();
        if candidates.is_empty() {
            self.no_room_at = Some(now);
            return false;
        }
        if candidates.len() > batch {
            candidates.select_nth_unstable_by_key(batch, |(k, _)| *k);
            candidates.truncate(batch);
        }
        for (_, net) in candidates {
            self.remove_entry(&net);
        }
        self.entries.len() < cap
    }

    fn insert_entry(&mut self, mut e: BlockEntry) {
        if e.net.is_host() {
            e.net = IpNet::host(e.net.addr());
        }
        let net = e.net;
        if self.entries.insert(net, e).is_some() {
            return;
        }
        if !net.is_host() {
            *self
                .range_lens
                .entry((is_v6(&net), net.prefix_len()))
                .or_insert(0) += 1;
        }
        for p in parents(&net).into_iter().flatten() {
            *self.members.entry(p).or_insert(0) += 1;
        }
    }

    fn remove_entry(&mut self, net: &IpNet) -> Option<BlockEntry> {
        let e = self.entries.remove(net)?;
        self.no_room_at = None;
        if !net.is_host() {
            let key = (is_v6(net), net.prefix_len());
            if let Some(n) = self.range_lens.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.range_lens.remove(&key);
                }
            }
        }
        for p in parents(net).into_iter().flatten() {
            if let Some(n) = self.members.get_mut(&p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.members.remove(&p);
                }
            }
        }
        Some(e)
    }

    /// Rebuilds the lookup indexes after a bulk change.
    fn reindex(&mut self) {
        self.no_room_at = None;
        self.range_lens.clear();
        self.members.clear();
        for net in self.entries.keys() {
            if !net.is_host() {
                *self
                    .range_lens
                    .entry((is_v6(net), net.prefix_len()))
                    .or_insert(0) += 1;
            }
            for p in parents(net).into_iter().flatten() {
                *self.members.entry(p).or_insert(0) += 1;
            }
        }
    }

    /// Notes a refused attempt by a blocked IP (keeps `last_attempt` current for the
    /// list view). Does not count as a failure.
    pub fn note_attempt(&mut self, ip: IpAddr, now: Millis) {
        let Some(net) = self.active_for(ip, now).map(|e| e.net) else {
            return;
        };
        if let Some(e) = self.entries.get_mut(&net) {
            e.last_attempt = e.last_attempt.max(now);
        }
    }

    /// Blocks an address or a range by hand: until `until`, or permanently with
    /// `None`. Never refused for lack of room (a ban by hand is not a counter).
    pub fn block(&mut self, target: impl Into<IpNet>, until: Option<Millis>, now: Millis) {
        let mut net: IpNet = target.into();
        if net.is_host() {
            net = IpNet::host(net.addr());
        }
        if !self.entries.contains_key(&net) {
            self.make_room(now);
            self.insert_entry(BlockEntry::new(net, now));
        }
        if let Some(e) = self.entries.get_mut(&net) {
            match until {
                None => e.permanent = true,
                Some(u) => e.blocked_until = e.blocked_until.max(Some(u)),
            }
        }
    }

    /// Releases an address or a range completely (block, permanent flag and failure
    /// count). Returns whether it was tracked.
    pub fn unblock(&mut self, target: impl Into<IpNet>) -> bool {
        let mut net: IpNet = target.into();
        if net.is_host() {
            net = IpNet::host(net.addr());
        }
        self.remove_entry(&net).is_some()
    }

    /// Removes every entry except permanent blocks (spec: `clear` keeps permanent
    /// blocks). Returns how many were removed.
    pub fn clear(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.permanent);
        self.reindex();
        before - self.entries.len()
    }

    /// Every entry, sorted by network: the snapshot to persist.
    pub fn entries(&self) -> Vec<BlockEntry> {
        let mut v: Vec<BlockEntry> = self.entries.values().cloned().collect();
        v.sort_by_key(|e| e.net);
        v
    }

    /// The entries that block at `now`, sorted by network (the `list` command).
    pub fn active(&self, now: Millis) -> Vec<BlockEntry> {
        let mut v: Vec<BlockEntry> = self
            .entries
            .values()
            .filter(|e| e.is_active(now))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.net);
        v
    }

    /// Number of entries.
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
        let removed = before - self.entries.len();
        if removed > 0 {
            self.reindex();
        }
        removed
    }

    fn maybe_sweep(&mut self, now: Millis) {
        let due = now.saturating_sub(self.last_sweep);
        let full = self.entries.len() >= self.config.cap();
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
    fn a_full_table_evicts_the_oldest_counters_never_the_bans() {
        let config = BlocklistConfig {
            max_entries: 3,
            ..BlocklistConfig::default()
        };
        let mut bl = Blocklist::new(config);
        let banned = ip("10.0.0.9");
        bl.block(banned, Some(T0 + HOUR_MS), T0);
        assert!(bl.record_failure(ip("10.0.0.1"), T0).tracked);
        assert!(bl.record_failure(ip("10.0.0.2"), T0 + 1).tracked);
        // Full: a new offender is counted, the oldest counter makes room.
        let o = bl.record_failure(ip("10.0.1.1"), T0 + 2);
        assert!(o.tracked);
        assert_eq!(bl.len(), 3);
        assert!(bl.get(ip("10.0.0.1")).is_none(), "oldest counter evicted");
        assert!(bl.get(ip("10.0.0.2")).is_some());
        assert!(
            bl.is_blocked(banned, T0 + 2),
            "an active ban is never evicted"
        );
        // A table of nothing but active bans leaves a new failure uncounted.
        let mut bl = Blocklist::new(config);
        for i in 0..3u8 {
            bl.block(IpAddr::from([10, 0, 0, i]), None, T0);
        }
        assert!(!bl.record_failure(ip("10.0.1.1"), T0).tracked);
        assert_eq!(bl.len(), 3);
        // Once counters expire, there is room again without eviction.
        let mut bl = Blocklist::new(config);
        for i in 0..3u8 {
            bl.record_failure(IpAddr::from([10, 0, 0, i]), T0);
        }
        assert!(bl.record_failure(ip("10.0.1.1"), T0 + 25 * HOUR_MS).tracked);
        assert_eq!(bl.len(), 1);
    }

    /// The attack of issue 14 point 5: one failure from each of 100,000+ addresses of
    /// one /48 used to fill the table (100,000 entries) and switch banning off for
    /// everyone for 24 h. Now the /48 is counted as one offender and banned, the
    /// table stays small, and a new IPv4 offender is still counted and banned.
    #[test]
    fn one_48_cannot_fill_the_table_and_gets_banned_as_a_whole() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let base = u128::from("2001:db8:1::".parse::<std::net::Ipv6Addr>().unwrap());
        let n: u128 = 120_000;
        let mut first_blocked_at = None;
        for i in 0..n {
            // Spread over /64s (the cheap way round per-/64 limits) and hosts.
            let a = base | ((i % 65_536) << 64) | (i / 65_536 + 1);
            let addr = IpAddr::V6(std::net::Ipv6Addr::from(a));
            let o = bl.record_failure(addr, T0 + (i as u64) / 1000);
            assert!(o.tracked, "failure {i} not counted");
            if o.blocked && first_blocked_at.is_none() {
                first_blocked_at = Some(i);
            }
        }
        assert!(bl.len() < 100, "table holds {} entries", bl.len());
        let net: IpNet = "2001:db8:1::/48".parse().unwrap();
        let agg = bl.get_net(&net).expect("the /48 aggregate");
        assert!(
            !agg.permanent,
            "an aggregate is never banned for good by itself"
        );
        let now = T0 + 200;
        assert!(bl.is_blocked(ip("2001:db8:1:ffff::1234"), now));
        assert!(
            first_blocked_at.is_some_and(|i| i < 100),
            "banned after {first_blocked_at:?}"
        );
        // Neighbours outside the /48 are not affected.
        assert!(!bl.is_blocked(ip("2001:db8:2::1"), now));
        // Banning still works for everyone else.
        let other = ip("198.51.100.77");
        for _ in 0..5 {
            assert!(bl.record_failure(other, now).tracked);
        }
        assert!(bl.is_blocked(other, now));
    }

    /// The same with IPv4 (no aggregation): 100,500 distinct offenders fill the table
    /// of 100,000; the bans among them survive, and a new offender is still banned.
    #[test]
    fn a_full_ipv4_table_still_bans_new_offenders() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        let banned: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()))
            .collect();
        for &a in &banned {
            for _ in 0..5 {
                bl.record_failure(a, T0);
            }
        }
        for i in 0..100_500u32 {
            let a = IpAddr::from((0x0b00_0000u32 + i).to_be_bytes());
            assert!(bl.record_failure(a, T0 + 1 + u64::from(i) / 100).tracked);
        }
        assert!(bl.len() <= 100_000);
        let now = T0 + 2_000;
        assert!(banned.iter().all(|&a| bl.is_blocked(a, now)));
        let fresh = ip("198.51.100.200");
        for _ in 0..5 {
            assert!(bl.record_failure(fresh, now).tracked);
        }
        assert!(bl.is_blocked(fresh, now));
    }

    #[test]
    fn a_64_is_aggregated_before_its_48() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        for i in 1..=7u16 {
            let a = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 5, 1, 0, 0, 0, i));
            let o = bl.record_failure(a, T0);
            assert!(o.entry.is_host());
        }
        let eighth = ip("2001:db8:5:1::8");
        let o = bl.record_failure(eighth, T0);
        assert_eq!(o.entry.to_string(), "2001:db8:5:1::/64");
        for _ in 0..4 {
            bl.record_failure(ip("2001:db8:5:1::99"), T0);
        }
        assert!(bl.is_blocked(ip("2001:db8:5:1:abcd::1"), T0));
        assert!(!bl.is_blocked(ip("2001:db8:5:2::1"), T0), "only the /64");
        // An address with its own entry keeps counting on it.
        assert!(bl.record_failure(ip("2001:db8:5:1::1"), T0).entry.is_host());
        // Persisted and restored as a range entry.
        let restored = Blocklist::from_entries(BlocklistConfig::default(), bl.entries());
        assert!(restored.is_blocked(ip("2001:db8:5:1:abcd::1"), T0));
        let mut restored = restored;
        assert!(restored.unblock("2001:db8:5:1::/64".parse::<IpNet>().unwrap()));
        assert!(!restored.is_blocked(ip("2001:db8:5:1:abcd::1"), T0));
    }

    #[test]
    fn manual_ranges_block_their_members() {
        let mut bl = Blocklist::new(BlocklistConfig::default());
        bl.block("203.0.113.0/24".parse::<IpNet>().unwrap(), None, T0);
        assert!(bl.is_blocked(ip("203.0.113.200"), T0));
        assert!(bl.is_blocked(ip("::ffff:203.0.113.1"), T0));
        assert!(!bl.is_blocked(ip("203.0.114.1"), T0));
        assert_eq!(
            bl.status(ip("203.0.113.5"), T0),
            Some(ActiveBlock {
                until: None,
                permanent: true
            })
        );
        bl.note_attempt(ip("203.0.113.5"), T0 + 5);
        assert_eq!(bl.entries()[0].last_attempt, T0 + 5);
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
            net: IpNet::host(ip("10.0.0.1")),
            failure_count: 1,
            first_failure_at: T0,
            blocked_until: None,
            permanent: false,
            last_attempt: T0,
        };
        let perm = BlockEntry {
            net: IpNet::host(ip("10.0.0.2")),
            permanent: true,
            ..counter.clone()
        };
        let bl = Blocklist::from_entries(config, vec![counter, perm]);
        assert_eq!(bl.len(), 1);
        assert!(bl.is_blocked(ip("10.0.0.2"), T0));
    }
}
