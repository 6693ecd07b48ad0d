//! # flm-guard — FLM's security decisions as pure functions
//!
//! Everything the proxy must *decide* about a request before it spends anything on it
//! (spec 40-security; DESIGN.md §2 and §3.2–3.5), with no I/O at all: no sockets, no
//! files, no clock, no async runtime, no logging. The proxy feeds in facts and the
//! time, persists what it is told to persist, and turns decisions into responses.
//!
//! | module | main types | decides |
//! |---|---|---|
//! | [`policy`] | [`SecurityPolicy`], [`EffectivePolicy`], [`PolicyErrors`] | what the stored policy document means; every validation problem with its field path; which protections run on a loopback vs an exposed bind |
//! | [`net`] | [`IpNet`], [`AllowList`], [`client_ip`] | CIDR matching, the client address behind trusted proxies, the allow list |
//! | [`ratelimit`] | [`RateLimiter`], [`Limit`], [`Decision`], [`TokenBudget`] | `429` + `Retry-After` + `X-RateLimit-*`, tightened limits for suspicious IPs |
//! | [`blocklist`] | [`Blocklist`], [`BlockEntry`], [`FailureOutcome`] | failure counting, 30 min → 24 h → permanent escalation, snapshot/restore |
//! | [`intrusion`] | [`inspect`], [`RequestFacts`], [`Finding`], [`IntrusionDetector`] | signature findings on non-content request parts and the per-IP score ladder |
//! | [`anomaly`] | [`AnomalyDetector`], [`Anomaly`] | floods, scans, 404 bursts and other behaviour over short windows |
//! | [`resource`] | [`ResourceGuard`], [`CpuSample`], [`MemSample`] | `503 resource_throttle` from CPU, memory and connection counts |
//! | [`score`] | [`ScoreBoard`], [`Verdict`], [`Action`] | the shared decay + warn/block ladder |
//! | [`normalize`] | [`normalize::decode`], [`normalize::normalize_path`] | what a percent-encoded, double-encoded, overlong-UTF-8 path really says |
//!
//! ## Design choices
//!
//! - **Pure and clock-injected.** Every function that needs time takes `now: Millis`
//!   (Unix milliseconds) from the caller; nothing reads a clock. Tests step through
//!   hours of escalation and decay in microseconds, and fuzzing is deterministic. The
//!   alternative, `Instant` inside the limiters, would make every timing rule untestable
//!   without sleeping. Times that go backwards never panic; at worst a key stays limited
//!   until the clock catches up.
//! - **State is plain data behind `&mut self`.** The proxy decides the locking
//!   (a `Mutex` per structure, or sharding); read-only checks on the hot path
//!   ([`Blocklist::is_blocked`], score look-ups) take `&self` so they can run under a
//!   read lock.
//! - **Right-most `X-Forwarded-For`.** The spec says "first address"; that one is chosen
//!   by the client and lets an attacker pick the IP that gets rate-limited and banned.
//!   [`client_ip`] walks from the right, skipping trusted proxies, and stops at the first
//!   address a trusted proxy vouched for. See its docs.
//! - **Combinations, not characters, for SQL injection.** A `'` is an apostrophe and a
//!   `;` is in every browser User-Agent; the spec's single-character triggers would
//!   score benign traffic. Signatures require a quote *and* a boolean/comment, or a SQL
//!   keyword sequence; see [`intrusion`]. Prompt content is never inspected at all
//!   (DESIGN.md §3.3): only method, decoded path, query, headers and non-content JSON
//!   fields ([`intrusion::fields_from_json`]).
//! - **Weak signals cannot block.** Things benign clients do (no User-Agent, repeating a
//!   prompt, slow CPU inference) count once per 10 minutes and only up to just below the
//!   warning threshold ([`score`]).
//! - **Bounded memory everywhere.** Each table (rate-limit keys, blocklist counters,
//!   scores, anomaly windows) has a cap (100 000 by default), forgets entries that carry
//!   no information any more (a replenished bucket, a decayed score, an expired
//!   counter), and sweeps at most once per second when full, so a distributed flood
//!   cannot grow memory or turn every request into an O(n) scan. What happens at the
//!   cap is documented per module and always fails towards safety (shared overflow
//!   bucket, per-request judgement) rather than letting traffic through unchecked.
//! - **Panic-free on any input.** No indexing, `unwrap` or arithmetic that can panic on
//!   request data; decoding never fails; inputs are length-capped. `tests/corpus.rs`
//!   runs seed files and mutations through every entry point.

#![deny(missing_docs)]

pub mod anomaly;
pub mod blocklist;
pub mod intrusion;
pub mod net;
pub mod normalize;
pub mod policy;
pub mod ratelimit;
pub mod resource;
pub mod score;
pub mod ssrf;

pub use anomaly::{Anomaly, AnomalyConfig, AnomalyDetector, AnomalyKind, AnomalyReport};
pub use blocklist::{
    ActiveBlock, BlockEntry, Blocklist, BlocklistConfig, FailureOutcome, NewBlock,
};
pub use intrusion::{
    inspect, inspect_fields, Finding, IntrusionConfig, IntrusionDetector, Location, Pattern,
    RequestFacts,
};
pub use net::{client_ip, AllowList, IpNet, NetError};
pub use policy::{EffectivePolicy, MediaFetchPolicy, PolicyError, PolicyErrors, SecurityPolicy};
pub use ratelimit::{Decision, Limit, RateLimiter, Tightening, TokenBudget};
pub use resource::{Admission, CpuSample, MemSample, ResourceGuard, ResourceThresholds};
pub use score::{Action, Ladder, Level, ScoreBoard, Verdict};

/// A point in time: milliseconds since the Unix epoch, supplied by the caller.
pub type Millis = u64;

/// One minute in [`Millis`].
pub const MINUTE_MS: Millis = 60_000;
