//! The bounded in-memory store of responses, for `previous_response_id` and
//! `GET /v1/responses/{id}` (docs/guides/proxy.md, "Responses API").
//!
//! Each entry holds the response object as it was answered and the whole
//! conversation up to it (input items of every earlier turn, then this turn's input
//! and output), so a follow-up never depends on an older entry still being there.
//! An entry belongs to the API key that created it: any other key is told the id
//! does not exist. Limits: [`MAX_ENTRIES`] responses, [`MAX_BYTES`] of stored JSON
//! in all, [`TTL`] after creation; the oldest entries go first. Nothing is written to
//! disk: a restart of the proxy forgets every response.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Responses kept, at most.
pub const MAX_ENTRIES: usize = 1000;
/// Stored JSON (responses and conversations), at most, in bytes.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// One entry larger than this is not stored.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;
/// How long a response is kept after it was created.
pub const TTL: Duration = Duration::from_secs(3 * 60 * 60);

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The key that created it.
    pub key_id: String,
    /// The response object as answered.
    pub response: Value,
    /// Input items of the whole conversation, this response's output included.
    pub history: Vec<Value>,
    bytes: usize,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Stored>,
    /// Ids in creation order (may name entries already removed).
    order: VecDeque<String>,
    bytes: usize,
}

/// The store of one proxy instance.
#[derive(Default)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn size(response: &Value, history: &[Value]) -> usize {
    let items: usize = history.iter().map(|v| v.to_string().len()).sum();
    response.to_string().len() + items
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Stored> {
        let e = self.entries.remove(id)?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e)
    }

    /// Drops expired entries, then the oldest ones while over a limit.
    fn evict(&mut self, now: Instant, incoming: usize) {
        while let Some(id) = self.order.front().cloned() {
            let expired = self
                .entries
                .get(&id)
                .is_none_or(|e| now.duration_since(e.at) >= TTL);
            let over = self.entries.len() >= MAX_ENTRIES || self.bytes + incoming > MAX_BYTES;
            if !(expired || over) {
                break;
            }
            self.order.pop_front();
            self.remove(&id);
        }
    }
}

impl ResponseStore {
    /// Stores a response of `key_id`; `false` when it is too large to keep.
    pub fn put(&self, id: &str, key_id: &str, response: Value, history: Vec<Value>) -> bool {
        self.put_at(id, key_id, response, history, Instant::now())
    }

    fn put_at(
        &self,
        id: &str,
        key_id: &str,
        response: Value,
        history: Vec<Value>,
        now: Instant,
    ) -> bool {
        let bytes = size(&response, &history);
        if bytes > MAX_ENTRY_BYTES {
            tracing::warn!(response_id = %id, bytes, "response too large to store for previous_response_id");
            return false;
        }
        let mut inner = lock(&self.inner);
        inner.remove(id);
        inner.evict(now, bytes);
        if inner.order.len() > 2 * MAX_ENTRIES {
            // Ids of deleted entries: drop them so the queue stays bounded.
            let Inner { order, entries, .. } = &mut *inner;
            order.retain(|i| entries.contains_key(i));
        }
        inner.bytes += bytes;
        inner.order.push_back(id.to_owned());
        inner.entries.insert(
            id.to_owned(),
            Stored {
                key_id: key_id.to_owned(),
                response,
                history,
                bytes,
                at: now,
            },
        );
        true
    }

    /// The response `id` if it exists, has not expired and belongs to `key_id`.
    pub fn get(&self, id: &str, key_id: &str) -> Option<Stored> {
        self.get_at(id, key_id, Instant::now())
    }

    fn get_at(&self, id: &str, key_id: &str, now: Instant) -> Option<Stored> {
        let mut inner = lock(&self.inner);
        let e = inner.entries.get(id)?;
        if now.duration_since(e.at) >= TTL {
            inner.remove(id);
            return None;
        }
        (e.key_id == key_id).then(|| e.clone())
    }

    /// Deletes the response `id` of `key_id`; `false` if there is none.
    pub fn delete(&self, id: &str, key_id: &str) -> bool {
        let mut inner = lock(&self.inner);
        if inner.entries.get(id).is_some_and(|e| e.key_id == key_id) {
            inner.remove(id);
            true
        } else {
            false
        }
    }

    /// (entries, bytes) held now.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_belong_to_their_key_and_expire() {
        let s = ResponseStore::default();
        let t0 = Instant::now();
        assert!(s.put_at("resp_1", "key_a", json!({"id": "resp_1"}), vec![], t0));
        assert!(s.get_at("resp_1", "key_a", t0).is_some());
        assert!(s.get_at("resp_1", "key_b", t0).is_none());
        assert!(!s.delete("resp_1", "key_b"));
        assert!(s.get_at("resp_1", "key_a", t0 + TTL).is_none());
        assert_eq!(s.usage(), (0, 0));
        s.put_at("resp_2", "key_a", json!({}), vec![], t0);
        assert!(s.delete("resp_2", "key_a"));
        assert!(s.get_at("resp_2", "key_a", t0).is_none());
    }

    #[test]
    fn count_and_byte_caps_evict_the_oldest() {
        let s = ResponseStore::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES + 5 {
            s.put_at(&format!("r{i}"), "k", json!({}), vec![], t0);
        }
        assert_eq!(s.usage().0, MAX_ENTRIES);
        assert!(s.get_at("r0", "k", t0).is_none());
        assert!(s
            .get_at(&format!("r{}", MAX_ENTRIES + 4), "k", t0)
            .is_some());
        // Five entries of 15 MiB: only the last four fit in 64 MiB.
        let big = Value::String("x".repeat(15 * 1024 * 1024));
        for i in 0..5 {
            assert!(s.put_at(&format!("big{i}"), "k", big.clone(), vec![], t0));
        }
        let (_, bytes) = s.usage();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert!(s.get_at("big0", "k", t0).is_none());
        assert!(s.get_at("big4", "k", t0).is_some());
        // Larger than one entry may be: refused.
        let huge = Value::String("x".repeat(MAX_ENTRY_BYTES + 1));
        assert!(!s.put_at("huge", "k", huge, vec![], t0));
    }
}
