//! One-time login codes and browser sessions, in memory: a daemon restart logs
//! everyone out, and nothing secret is ever written to disk.
//!
//! Codes and session ids are 256-bit random values (64 hex characters). A lookup
//! finds the entry by hash, then compares it again in constant time: the map's own
//! equality check is not constant time, and a guess must match all 256 bits anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use subtle::ConstantTimeEq;

/// How long codes and sessions live; injectable so tests need not wait hours.
#[derive(Debug, Clone, Copy)]
pub struct SessionTiming {
    /// Validity of a one-time login code.
    pub code_ttl: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, however busy.
    pub absolute: Duration,
}

impl Default for SessionTiming {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(60),
            idle: Duration::from_secs(12 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Outstanding codes are bounded so a local process asking for codes in a loop
/// cannot grow the daemon's memory.
const MAX_CODES: usize = 64;
/// Live sessions are bounded for the same reason; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Value of the `flm_session` cookie.
    pub id: String,
    /// Value the app sends in `X-FLM-CSRF`.
    pub csrf_token: String,
    created: Instant,
    last_seen: Instant,
    created_wall: chrono::DateTime<chrono::Utc>,
}

impl Session {
    /// When the session ends if it stays in use (the earlier of idle and absolute).
    pub fn expires_at(
        &self,
        timing: &SessionTiming,
        now: Instant,
    ) -> chrono::DateTime<chrono::Utc> {
        let idle_end = (now + timing.idle).saturating_duration_since(self.created);
        let end = idle_end.min(timing.absolute);
        self.created_wall + chrono::Duration::from_std(end).unwrap_or(chrono::Duration::zero())
    }
}

/// Codes and sessions.
pub struct Sessions {
    timing: SessionTiming,
    codes: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as 64 hex characters.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// Finds `presented` among `keys` with a constant-time comparison of the match.
fn ct_find<'a, V>(map: &'a HashMap<String, V>, presented: &str) -> Option<&'a String> {
    let (k, _) = map.get_key_value(presented)?;
    bool::from(k.as_bytes().ct_eq(presented.as_bytes())).then_some(k)
}

impl Sessions {
    /// An empty store.
    pub fn new(timing: SessionTiming) -> Self {
        Self {
            timing,
            codes: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The durations in force.
    pub fn timing(&self) -> SessionTiming {
        self.timing
    }

    /// A new one-time login code.
    pub fn issue_code(&self, now: Instant) -> String {
        let code = random_token();
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, issued| now.saturating_duration_since(*issued) < self.timing.code_ttl);
        if codes.len() >= MAX_CODES {
            if let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                codes.remove(&oldest);
            }
        }
        codes.insert(code.clone(), now);
        code
    }

    /// Exchanges a code for a new session. The code is consumed whatever the outcome
    /// of its expiry check, so it can never be used twice.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<Session> {
        let issued = {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            let key = ct_find(&codes, code)?.clone();
            codes.remove(&key)?
        };
        if now.saturating_duration_since(issued) >= self.timing.code_ttl {
            return None;
        }
        let session = Session {
            id: random_token(),
            csrf_token: random_token(),
            created: now,
            last_seen: now,
            created_wall: chrono::Utc::now(),
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut sessions, now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.last_seen)
                .map(|s| s.id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(session.id.clone(), session.clone());
        Some(session)
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) < self.timing.idle
            && now.saturating_duration_since(s.created) < self.timing.absolute
    }

    fn prune(&self, sessions: &mut HashMap<String, Session>, now: Instant) {
        sessions.retain(|_, s| self.alive(s, now));
    }

    /// The live session with this id, touched (its idle timer restarts).
    pub fn touch(&self, id: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = ct_find(&sessions, id)?.clone();
        let alive = sessions.get(&key).is_some_and(|s| self.alive(s, now));
        if !alive {
            sessions.remove(&key);
            return None;
        }
        let s = sessions.get_mut(&key)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Ends a session (logout).
    pub fn end(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = ct_find(&sessions, id).cloned() {
            sessions.remove(&key);
        }
    }

    /// Whether someone uses the app: a live session or an unexpired code. The daemon
    /// stays up while this is true even when no proxy runs.
    pub fn in_use(&self, now: Instant) -> bool {
        let codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        if codes
            .values()
            .any(|t| now.saturating_duration_since(*t) < self.timing.code_ttl)
        {
            return true;
        }
        drop(codes);
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.values().any(|s| self.alive(s, now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn timing() -> SessionTiming {
        SessionTiming {
            code_ttl: Duration::from_secs(60),
            idle: Duration::from_secs(100),
            absolute: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_code_works_once_and_only_in_time() {
        let s = Sessions::new(timing());
        let t = Instant::now();
        let code = s.issue_code(t);
        assert_eq!(code.len(), 64);
        assert!(s.redeem(&code, t + Duration::from_secs(59)).is_some());
        assert!(s.redeem(&code, t + Duration::from_secs(59)).is_none());
        let late = s.issue_code(t);
        assert!(s.redeem(&late, t + Duration::from_secs(60)).is_none());
        assert!(s.redeem("", t).is_none());
        assert!(s.redeem(&"0".repeat(64), t).is_none());
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_on_logout() {
        let s = Sessions::new(timing());
        let t = Instant::now();
        let a = s.redeem(&s.issue_code(t), t).unwrap();
        // Kept alive by use, until the absolute limit.
        for i in 1..=5 {
            let at = t + Duration::from_secs(60 * i);
            assert_eq!(s.touch(&a.id, at).is_some(), 60 * i < 300, "{i}");
        }
        let b = s.redeem(&s.issue_code(t), t).unwrap();
        assert!(s.touch(&b.id, t + Duration::from_secs(100)).is_none());
        let c = s.redeem(&s.issue_code(t), t).unwrap();
        assert!(s.in_use(t));
        s.end(&c.id);
        assert!(s.touch(&c.id, t).is_none());
        assert!(!s.in_use(t + Duration::from_secs(400)));
    }

    #[test]
    fn codes_and_sessions_are_bounded() {
        let s = Sessions::new(timing());
        let t = Instant::now();
        for _ in 0..(MAX_CODES * 3) {
            s.issue_code(t);
        }
        assert!(s.codes.lock().unwrap().len() <= MAX_CODES);
        for _ in 0..(MAX_SESSIONS + 10) {
            let c = s.issue_code(t);
            s.redeem(&c, t).unwrap();
        }
        assert!(s.sessions.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
