//! Rate limiting (spec 40-security §4): a GCRA limiter for requests per key, dynamic
//! tightening for suspicious IPs, and an optional tokens-per-minute budget.
//!
//! **GCRA** (generic cell rate algorithm) is a token bucket stored as one number per
//! key, the *theoretical arrival time* (TAT): each request pushes the TAT one emission
//! interval (`60 s / rpm`) into the future, and a request is refused when that would
//! put the TAT more than `burst` intervals ahead of now. It gives the spec's token
//! bucket (capacity `burst`, refill `rpm/60` per second) exactly, needs no timer to
//! refill, and yields `remaining`, `reset` and `Retry-After` by arithmetic. The spec's
//! additional fixed 60-second window is not kept: fixed windows admit 2× the limit
//! around a window boundary, so they add no real bound over the bucket.
//!
//! **Bounded memory.** A key whose TAT is in the past is fully replenished, which is
//! exactly the state of an unknown key, so it can be forgotten without changing any
//! decision. Idle keys are swept at most once a minute on insert (and by
//! [`RateLimiter::sweep`] from a maintenance tick). The table holds at most
//! `max_keys` keys ([`DEFAULT_MAX_KEYS`] = 100 000, ≈ 10 MB with IPv6 key strings); when
//! it is full of live keys even after a sweep (a distributed flood), new keys share one
//! **overflow bucket** with the same limit. That fails closed for new clients during
//! such a flood instead of letting every new address through untracked.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Millis, MINUTE_MS};

/// Default cap on tracked keys; see the module docs.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Requests per minute allowed to a blocked IP (spec §4 "dynamic IP tightening").
pub const BLOCKED_RPM: u32 = 10;

/// Idle keys are swept at most this often during normal operation.
const IDLE_SWEEP_INTERVAL_MS: Millis = MINUTE_MS;
/// A full table is swept at most this often.
const FULL_SWEEP_INTERVAL_MS: Millis = 1_000;

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_MINUTE: u128 = 60_000 * NANOS_PER_MS;

/// A rate: `rpm` per minute with bursts of up to `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limit {
    /// Sustained requests per minute; 0 disables the limit.
    pub rpm: u32,
    /// Bucket capacity: requests that may arrive at once after an idle period.
    pub burst: u32,
}

// === impl Limit ===

impl Limit {
    /// A limit; `burst == 0` means "same as `rpm`" (the spec default).
    pub fn new(rpm: u32, burst: u32) -> Self {
        let burst = if burst == 0 { rpm } else { burst };
        Self { rpm, burst }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self { rpm: 0, burst: 0 }
    }

    /// Whether this limit refuses nothing.
    pub fn is_unlimited(&self) -> bool {
        self.rpm == 0
    }

    /// The limit after dynamic tightening (spec §4): a blocked IP gets
    /// [`BLOCKED_RPM`]; a score ≥ 100 halves the limit; ≥ 50 takes 75 %. Burst shrinks by
    /// the same factor. Never rounds down to 0 (which would mean "unlimited").
    pub fn tightened(self, t: Tightening) -> Self {
        if self.is_unlimited() {
            return match t {
                Tightening::Blocked => Self::new(BLOCKED_RPM, BLOCKED_RPM),
                _ => self,
            };
        }
        let scale = |v: u32, pct: u64| -> u32 {
            let scaled = (u64::from(v) * pct).div_ceil(100);
            u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
        };
        match t {
            Tightening::None => self,
            Tightening::Watch => Self::new(scale(self.rpm, 75), scale(self.burst, 75)),
            Tightening::Suspect => Self::new(scale(self.rpm, 50), scale(self.burst, 50)),
            Tightening::Blocked => {
                Self::new(self.rpm.min(BLOCKED_RPM), self.burst.min(BLOCKED_RPM))
            }
        }
    }

    fn interval_ns(&self) -> u128 {
        (NANOS_PER_MINUTE / u128::from(self.rpm.max(1))).max(1)
    }
}

/// How much an IP's limit is tightened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tightening {
    /// Configured limit.
    None,
    /// 75 %: intrusion or anomaly score ≥ 50.
    Watch,
    /// 50 %: score ≥ 100.
    Suspect,
    /// 10 rpm: the IP is blocked.
    Blocked,
}

impl Tightening {
    /// The tightening for an IP given its highest intrusion/anomaly score and whether it
    /// is blocked. Uses the spec's fixed 50/100 steps.
    pub fn for_ip(score: u32, blocked: bool) -> Self {
        if blocked {
            Self::Blocked
        } else if score >= 100 {
            Self::Suspect
        } else if score >= 50 {
            Self::Watch
        } else {
            Self::None
        }
    }
}

/// The outcome of one rate-limit check, with everything the `429` response and the
/// `X-RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket capacity (`X-RateLimit-Limit`); 0 when the limit is disabled.
    pub limit: u32,
    /// Requests still allowed right now (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the bucket is full again (`X-RateLimit-Reset` = now + this).
    pub reset_after_ms: Millis,
    /// When refused: time until one request is allowed (`Retry-After`). 0 when allowed.
    pub retry_after_ms: Millis,
}

impl Decision {
    fn unlimited() -> Self {
        Self {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_after_ms: 0,
            retry_after_ms: 0,
        }
    }

    /// `Retry-After` in whole seconds, rounded up; at least 1 when refused, 0 when
    /// allowed.
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            0
        } else {
            self.retry_after_ms.div_ceil(1000).max(1)
        }
    }

    /// `X-RateLimit-Reset` as Unix seconds, rounded up.
    pub fn reset_at_unix_secs(&self, now: Millis) -> u64 {
        now.saturating_add(self.reset_after_ms).div_ceil(1000)
    }
}

/// A key's state for persistence (`rate_limit_states`): the theoretical arrival time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateState {
    /// The key (`api_key_id` or `ip:<addr>`).
    pub key: String,
    /// Theoretical arrival time, Unix milliseconds. The bucket is full at this time.
    pub tat_ms: Millis,
}

/// TAT table with bounded memory, shared by [`RateLimiter`] and [`TokenBudget`].
#[derive(Debug, Clone)]
struct TatTable {
    map: HashMap<String, u128>,
    max_keys: usize,
    last_sweep: Millis,
    overflow: u128,
}

impl TatTable {
    fn new(max_keys: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_keys: max_keys.max(1),
            last_sweep: 0,
            overflow: 0,
        }
    }

    /// Runs `f` on the TAT of `key`, creating it (or falling back to the overflow
    /// bucket) when unknown. `f` returns whether it changed the TAT from "idle".
    fn with<R>(&mut self, key: &str, now: Millis, f: impl FnOnce(&mut u128) -> R) -> R {
        if let Some(tat) = self.map.get_mut(key) {
            return f(tat);
        }
        let due = now.saturating_sub(self.last_sweep);
        if due >= IDLE_SWEEP_INTERVAL_MS
            || (self.map.len() >= self.max_keys && due >= FULL_SWEEP_INTERVAL_MS)
            || now < self.last_sweep
        {
            self.sweep(now);
        }
        if self.map.len() >= self.max_keys {
            return f(&mut self.overflow);
        }
        let mut tat = 0u128;
        let r = f(&mut tat);
        if tat > to_ns(now) {
            self.map.insert(key.to_owned(), tat);
        }
        r
    }

    fn sweep(&mut self, now: Millis) {
        self.last_sweep = now;
        let now_ns = to_ns(now);
        self.map.retain(|_, tat| *tat > now_ns);
    }
}

fn to_ns(ms: Millis) -> u128 {
    u128::from(ms) * NANOS_PER_MS
}

fn ns_to_ms_ceil(ns: u128) -> Millis {
    Millis::try_from(ns.div_ceil(NANOS_PER_MS)).unwrap_or(Millis::MAX)
}

/// GCRA step: `cost` cells at `interval` each, capacity `capacity` cells.
/// Returns `(allowed, remaining cells, reset_after_ns, retry_after_ns)`.
fn gcra(
    tat: &mut u128,
    now: u128,
    cost: u128,
    interval: u128,
    capacity: u128,
) -> (bool, u128, u128, u128) {
    let tau = interval.saturating_mul(capacity);
    let base = (*tat).max(now);
    let new_tat = base.saturating_add(interval.saturating_mul(cost));
    let ahead = new_tat - now;
    if ahead > tau {
        let retry = ahead - tau;
        let current_ahead = base - now;
        let remaining = tau.saturating_sub(current_ahead) / interval;
        (false, remaining, current_ahead, retry)
    } else {
        *tat = new_tat;
        let remaining = (tau - ahead) / interval;
        (true, remaining, ahead, 0)
    }
}

/// A GCRA request limiter keyed by string; see the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: Limit,
    table: TatTable,
}

// === impl RateLimiter ===

impl RateLimiter {
    /// A limiter with the default key cap.
    pub fn new(limit: Limit) -> Self {
        Self::with_max_keys(limit, DEFAULT_MAX_KEYS)
    }

    /// A limiter tracking at most `max_keys` keys (at least 1).
    pub fn with_max_keys(limit: Limit, max_keys: usize) -> Self {
        Self {
            limit,
            table: TatTable::new(max_keys),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Replaces the limit (policy reload). Existing state stays meaningful: a TAT is a
    /// point in time, valid under any rate.
    pub fn set_limit(&mut self, limit: Limit) {
        self.limit = limit;
    }

    /// Counts one request for `key` under the configured limit.
    pub fn check(&mut self, key: &str, now: Millis) -> Decision {
        let limit = self.limit;
        self.check_with(key, limit, now)
    }

    /// Counts one request for `key` under `limit` (e.g. the configured limit
    /// [`Limit::tightened`] for this IP). A refused request consumes nothing.
    pub fn check_with(&mut self, key: &str, limit: Limit, now: Millis) -> Decision {
        if limit.is_unlimited() {
            return Decision::unlimited();
        }
        let interval = limit.interval_ns();
        let capacity = u128::from(limit.burst.max(1));
        let now_ns = to_ns(now);
        let (allowed, remaining, reset, retry) = self
            .table
            .with(key, now, |tat| gcra(tat, now_ns, 1, interval, capacity));
        Decision {
            allowed,
            limit: limit.burst.max(1),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_after_ms: ns_to_ms_ceil(reset),
            retry_after_ms: ns_to_ms_ceil(retry),
        }
    }

    /// Number of tracked keys (the overflow bucket not included).
    pub fn len(&self) -> usize {
        self.table.map.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.map.is_empty()
    }

    /// Forgets every idle key. Cheap enough for a once-a-minute tick.
    pub fn sweep(&mut self, now: Millis) {
        self.table.sweep(now);
    }

    /// Forgets one key (e.g. a revoked API key, an unblocked IP).
    pub fn remove(&mut self, key: &str) {
        self.table.map.remove(key);
    }

    /// The non-idle keys, for persistence; sorted by key.
    pub fn snapshot(&self, now: Millis) -> Vec<RateState> {
        let now_ns = to_ns(now);
        let mut out: Vec<RateState> = self
            .table
            .map
            .iter()
            .filter(|(_, tat)| **tat > now_ns)
            .map(|(k, tat)| RateState {
                key: k.clone(),
                tat_ms: ns_to_ms_ceil(*tat),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Loads persisted states (after a restart). Idle states are skipped, and so is
    /// anything beyond the key cap. A TAT further ahead than one full bucket of the
    /// current limit (a stale state from a stricter limit) is pulled back to that.
    pub fn restore(&mut self, states: impl IntoIterator<Item = RateState>, now: Millis) {
        let now_ns = to_ns(now);
        let max_ahead = self
            .limit
            .interval_ns()
            .saturating_mul(u128::from(self.limit.burst.max(1)));
        for s in states {
            if self.table.map.len() >= self.table.max_keys {
                break;
            }
            let tat = to_ns(s.tat_ms);
            if tat > now_ns {
                let tat = tat.min(now_ns.saturating_add(max_ahead));
                self.table.map.insert(s.key, tat);
            }
        }
    }
}

/// A tokens-per-minute budget per key (optional, e.g. per API key): reserve an
/// estimate before calling the engine, then commit the actual usage.
///
/// The budget is a GCRA bucket counted in tokens: capacity `burst` tokens, refilled at
/// `tpm` per minute. Usage above the estimate is charged on commit and may put the key
/// into debt (its next requests wait); usage below is refunded.
#[derive(Debug, Clone)]
pub struct TokenBudget {
    tpm: u64,
    burst: u64,
    table: TatTable,
}

/// Tokens held for one in-flight request. Pass it back to [`TokenBudget::commit`]
/// exactly once, with the actual usage (0 if the request failed before generating).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "commit the reservation with the actual usage"]
pub struct Reservation {
    key: String,
    estimate: u64,
}

impl Reservation {
    /// The key the tokens were reserved for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The reserved estimate.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }
}

/// A refused reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("token budget exceeded; retry after {retry_after_ms} ms")]
pub struct BudgetDenied {
    /// Time until the estimate fits; `Millis::MAX` when it never can.
    pub retry_after_ms: Millis,
    /// The estimate exceeds the whole bucket: it can never be granted.
    pub too_large: bool,
}

// === impl TokenBudget ===

impl TokenBudget {
    /// A budget of `tpm` tokens per minute with a bucket of `burst` tokens (0 → `tpm`).
    /// `tpm == 0` disables it.
    pub fn new(tpm: u64, burst: u64) -> Self {
        Self {
            tpm,
            burst: if burst == 0 { tpm } else { burst },
            table: TatTable::new(DEFAULT_MAX_KEYS),
        }
    }

    fn interval_ns(&self) -> u128 {
        (NANOS_PER_MINUTE / u128::from(self.tpm.max(1))).max(1)
    }

    /// Reserves `estimate` tokens for `key`.
    pub fn reserve(
        &mut self,
        key: &str,
        estimate: u64,
        now: Millis,
    ) -> Result<Reservation, BudgetDenied> {
        if self.tpm == 0 {
            return Ok(Reservation {
                key: key.to_owned(),
                estimate: 0,
            });
        }
        if estimate > self.burst {
            return Err(BudgetDenied {
                retry_after_ms: Millis::MAX,
                too_large: true,
            });
        }
        let interval = self.interval_ns();
        let capacity = u128::from(self.burst);
        let now_ns = to_ns(now);
        let (allowed, _, _, retry) = self.table.with(key, now, |tat| {
            gcra(tat, now_ns, u128::from(estimate), interval, capacity)
        });
        if allowed {
            Ok(Reservation {
                key: key.to_owned(),
                estimate,
            })
        } else {
            Err(BudgetDenied {
                retry_after_ms: ns_to_ms_ceil(retry),
                too_large: false,
            })
        }
    }

    /// Settles a reservation with the tokens actually used.
    pub fn commit(&mut self, reservation: Reservation, actual: u64, now: Millis) {
        if self.tpm == 0 || actual == reservation.estimate {
            return;
        }
        let interval = self.interval_ns();
        let now_ns = to_ns(now);
        self.table.with(&reservation.key, now, |tat| {
            if actual > reservation.estimate {
                let extra = u128::from(actual - reservation.estimate);
                *tat = (*tat)
                    .max(now_ns)
                    .saturating_add(extra.saturating_mul(interval));
            } else {
                let refund = u128::from(reservation.estimate - actual);
                *tat = tat.saturating_sub(refund.saturating_mul(interval));
            }
        });
    }

    /// Tokens available to `key` right now.
    pub fn available(&self, key: &str, now: Millis) -> u64 {
        if self.tpm == 0 {
            return u64::MAX;
        }
        let now_ns = to_ns(now);
        let ahead = self
            .table
            .map
            .get(key)
            .map_or(0, |tat| tat.saturating_sub(now_ns));
        let used = ahead.div_ceil(self.interval_ns());
        u64::try_from(u128::from(self.burst).saturating_sub(used)).unwrap_or(0)
    }

    /// Forgets every replenished key.
    pub fn sweep(&mut self, now: Millis) {
        self.table.sweep(now);
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.table.map.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let mut rl = RateLimiter::new(Limit::new(60, 10));
        for i in 0..10u32 {
            let d = rl.check("k", T0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.limit, 10);
            assert_eq!(d.remaining, 9 - i);
        }
        let d = rl.check("k", T0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_ms, 1000, "one request per second at 60 rpm");
        assert_eq!(d.retry_after_secs(), 1);
        assert_eq!(d.reset_after_ms, 10_000);
        assert_eq!(d.reset_at_unix_secs(T0), T0 / 1000 + 10);
        // Refused requests consume nothing: exactly 1 s later one more is allowed.
        assert!(!rl.check("k", T0 + 999).allowed);
        assert!(rl.check("k", T0 + 1000).allowed);
        assert!(!rl.check("k", T0 + 1000).allowed);
    }

    #[test]
    fn keys_are_independent_and_idle_keys_forgotten() {
        let mut rl = RateLimiter::new(Limit::new(1, 1));
        assert!(rl.check("a", T0).allowed);
        assert!(!rl.check("a", T0).allowed);
        assert!(rl.check("b", T0).allowed);
        assert_eq!(rl.len(), 2);
        rl.sweep(T0 + 60_000);
        assert!(rl.is_empty());
        assert!(rl.check("a", T0 + 60_000).allowed);
    }

    #[test]
    fn unlimited_and_defaults() {
        let mut rl = RateLimiter::new(Limit::unlimited());
        for _ in 0..1000 {
            assert!(rl.check("k", T0).allowed);
        }
        assert!(rl.is_empty());
        assert_eq!(Limit::new(60, 0), Limit { rpm: 60, burst: 60 });
    }

    #[test]
    fn tightening_table() {
        let base = Limit::new(1000, 1000);
        let cases = [
            (0, false, Tightening::None, Limit::new(1000, 1000)),
            (49, false, Tightening::None, Limit::new(1000, 1000)),
            (50, false, Tightening::Watch, Limit::new(750, 750)),
            (99, false, Tightening::Watch, Limit::new(750, 750)),
            (100, false, Tightening::Suspect, Limit::new(500, 500)),
            (0, true, Tightening::Blocked, Limit::new(10, 10)),
        ];
        for (score, blocked, t, want) in cases {
            let got = Tightening::for_ip(score, blocked);
            assert_eq!(got, t, "score {score}");
            assert_eq!(base.tightened(got), want);
        }
        assert_eq!(
            Limit::new(1, 1).tightened(Tightening::Suspect),
            Limit::new(1, 1)
        );
        assert_eq!(
            Limit::unlimited().tightened(Tightening::Blocked),
            Limit::new(10, 10)
        );
    }

    #[test]
    fn check_with_tightened_limit() {
        let mut rl = RateLimiter::new(Limit::new(1000, 1000));
        let tight = rl.limit().tightened(Tightening::Blocked);
        let allowed = (0..50)
            .filter(|_| rl.check_with("ip:1.2.3.4", tight, T0).allowed)
            .count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn bounded_keys_use_overflow_bucket() {
        let mut rl = RateLimiter::with_max_keys(Limit::new(60, 2), 3);
        for k in ["a", "b", "c"] {
            assert!(rl.check(k, T0).allowed);
        }
        assert_eq!(rl.len(), 3);
        // Full of live keys: new keys share one bucket of capacity 2.
        assert!(rl.check("d", T0).allowed);
        assert!(rl.check("e", T0).allowed);
        assert!(!rl.check("f", T0).allowed);
        assert_eq!(rl.len(), 3);
        // After the keys go idle, a sweep makes room.
        assert!(rl.check("g", T0 + 2_000).allowed);
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn huge_rates_and_times_do_not_overflow() {
        let mut rl = RateLimiter::new(Limit::new(u32::MAX, u32::MAX));
        for _ in 0..10 {
            assert!(rl.check("k", Millis::MAX).allowed);
        }
        let mut rl = RateLimiter::new(Limit::new(1, 1));
        assert!(rl.check("k", Millis::MAX).allowed);
        let d = rl.check("k", Millis::MAX);
        assert!(!d.allowed);
        let _ = d.reset_at_unix_secs(Millis::MAX);
        // Clock going backwards: still a sane decision.
        assert!(!rl.check("k", 0).allowed);
    }

    #[test]
    fn snapshot_and_restore() {
        let mut rl = RateLimiter::new(Limit::new(60, 5));
        for _ in 0..5 {
            rl.check("k", T0);
        }
        let snap = rl.snapshot(T0);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].tat_ms, T0 + 5_000);
        let mut fresh = RateLimiter::new(Limit::new(60, 5));
        fresh.restore(snap, T0);
        assert!(!fresh.check("k", T0).allowed);
        assert!(fresh.check("k", T0 + 1000).allowed);
        // Idle states are not restored.
        let mut other = RateLimiter::new(Limit::new(60, 5));
        other.restore(
            vec![RateState {
                key: "old".into(),
                tat_ms: T0 - 1,
            }],
            T0,
        );
        assert!(other.is_empty());
    }

    #[test]
    fn token_budget_reserve_commit() {
        let mut b = TokenBudget::new(6000, 0); // 100 tokens per second
        let r = b.reserve("k", 4000, T0).unwrap();
        assert_eq!(b.available("k", T0), 2000);
        b.commit(r, 1000, T0); // refund 3000
        assert_eq!(b.available("k", T0), 5000);
        let r = b.reserve("k", 5000, T0).unwrap();
        let denied = b.reserve("k", 100, T0).unwrap_err();
        assert!(!denied.too_large);
        assert_eq!(denied.retry_after_ms, 1000);
        b.commit(r, 5500, T0); // 500 over: debt
        assert_eq!(b.available("k", T0), 0);
        assert!(b.reserve("k", 100, T0 + 5_000).is_err());
        assert!(b.reserve("k", 100, T0 + 6_000).is_ok());
        let too_big = b.reserve("other", 6001, T0).unwrap_err();
        assert!(too_big.too_large);
        assert_eq!(too_big.retry_after_ms, Millis::MAX);
        let mut off = TokenBudget::new(0, 0);
        let r = off.reserve("k", u64::MAX, T0).unwrap();
        off.commit(r, u64::MAX, T0);
    }
}
