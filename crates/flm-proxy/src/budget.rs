//! Token budgets of API keys (`--tpm`, `--monthly-tokens`; docs/guides/api-keys.md).
//!
//! Checked in `require_key` for keys that have a budget, on the routes that spend
//! tokens (every class but `models` and `metrics`; `GET`/`DELETE /v1/responses/{id}`
//! read or forget a stored response and are not checked either):
//! - **before** the request: the month's count must be below the quota
//!   (`429 monthly_quota_exceeded`), and an estimate of the request (its body size / 4)
//!   is reserved from the key's tokens-per-minute bucket ([`TokenBudget`], a GCRA
//!   bucket of `tpm` tokens refilled continuously; `429 token_rate_limit_exceeded`);
//! - **after** the response body ended (or the client went away): the tokens are the
//!   engine's `usage` (`prompt_tokens + completion_tokens`); without one, an estimate
//!   of (request bytes + response bytes) / 4 — on the audio and image routes only the
//!   text side counts ([`Sides`]). The reservation is settled with that
//!   number (debt delays the next requests; a smaller use is refunded) and the month's
//!   count grows by it. Failed requests (status ≥ 400) count no tokens.
//!
//! The month's count of a key is read from `api_key_token_usage` once per process and
//! month (the first request of the key), then kept in memory; additions are written
//! every [`FLUSH_EVERY`] and at stop, so the quota survives a restart. No request
//! waits on the database after that first read.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use flm_core::key_scope::{month_of, next_month_start, RouteClass};
use flm_core::keys::KeyGrant;
use flm_core::ports::ApiKeyRepository;
use flm_guard::ratelimit::Reservation;
use flm_guard::TokenBudget;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::error::ApiError;

/// How often counted tokens are written to the store (and at stop).
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tokens of a key in one month.
struct MonthUse {
    month: String,
    used: u64,
}

/// The token budgets of one manager's keys.
pub(crate) struct Budgets {
    repo: Arc<dyn ApiKeyRepository>,
    /// Key id → (its tpm, its bucket); rebuilt when the key's tpm changes.
    tpm: Mutex<HashMap<String, (u64, TokenBudget)>>,
    months: Mutex<HashMap<String, MonthUse>>,
    /// Counted but not yet written: (key id, month) → tokens.
    pending: Mutex<HashMap<(String, String), u64>>,
    last_flush: Mutex<Instant>,
    flushing: tokio::sync::Mutex<()>,
}

/// What a request admitted under a budget owes once it ended.
#[derive(Debug)]
pub(crate) struct Charge {
    key: String,
    month: String,
    reservation: Option<Reservation>,
    request_bytes: u64,
    /// Which side of the exchange is text, when the engine reports no usage.
    sides: Sides,
}

/// The sides of an exchange whose bytes estimate its tokens: audio and images are
/// not text, so an upload counts by its transcript and a generated image or speech
/// by its prompt (an 11 s recording is not 88,000 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sides {
    /// Request and response (chat, completions, embeddings, responses).
    Both,
    /// The request only (speech, image generation: the answer is media).
    Request,
    /// The response only (transcription, translation: the request is an upload).
    Response,
}

impl Sides {
    /// The sides of a request of `class`; `upload`: its body is `multipart/form-data`.
    pub(crate) fn of(class: Option<RouteClass>, upload: bool) -> Sides {
        match class {
            Some(RouteClass::Audio | RouteClass::Images) if upload => Sides::Response,
            Some(RouteClass::Audio | RouteClass::Images) => Sides::Request,
            _ => Sides::Both,
        }
    }
}

/// Whether requests of this class spend tokens.
fn spends_tokens(class: Option<RouteClass>) -> bool {
    !matches!(class, Some(RouteClass::Models | RouteClass::Metrics))
}

fn refused(code: &'static str, message: String, retry_after_secs: u64) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        "rate_limit_error",
        message,
    )
    .into_response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    );
    resp
}

impl Budgets {
    pub(crate) fn new(repo: Arc<dyn ApiKeyRepository>) -> Self {
        Self {
            repo,
            tpm: Mutex::new(HashMap::new()),
            months: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            last_flush: Mutex::new(Instant::now()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks a request of `grant`'s key before it runs: `Ok(None)` when the key has
    /// no budget (or the route spends no tokens), `Ok(Some(charge))` to settle with
    /// [`settle_when_done`], or the `429` to answer.
    pub(crate) async fn admit(
        &self,
        grant: &KeyGrant,
        class: Option<RouteClass>,
        request_bytes: u64,
        sides: Sides,
    ) -> Result<Option<Charge>, Response> {
        let request_bytes = if sides == Sides::Response {
            0
        } else {
            request_bytes
        };
        let budget = grant.budget;
        if budget.is_unlimited() || !spends_tokens(class) {
            return Ok(None);
        }
        let now = Utc::now();
        let month = month_of(now);
        if let Some(quota) = budget.monthly_tokens {
            let used = self.month_used(&grant.id, &month).await;
            if used >= quota {
                let reset = next_month_start(now);
                let secs = u64::try_from((reset - now).num_seconds()).unwrap_or(1);
                return Err(refused(
                    "monthly_quota_exceeded",
                    format!(
                        "this API key used its {quota} tokens for {month} ({used} counted); the quota resets at {} UTC",
                        reset.format("%Y-%m-%d %H:%M")
                    ),
                    secs,
                ));
            }
        }
        let estimate = request_bytes.div_ceil(4).max(1);
        let reservation = match budget.tpm {
            None => None,
            Some(tpm) => {
                let now_ms = crate::defence::now_ms();
                let mut buckets = lock(&self.tpm);
                let entry = buckets
                    .entry(grant.id.clone())
                    .or_insert_with(|| (tpm, TokenBudget::new(tpm, 0)));
                if entry.0 != tpm {
                    *entry = (tpm, TokenBudget::new(tpm, 0));
                }
                match entry.1.reserve(&grant.id, estimate.min(tpm), now_ms) {
                    Ok(r) => Some(r),
                    Err(denied) => {
                        let secs = denied.retry_after_ms.div_ceil(1000);
                        return Err(refused(
                            "token_rate_limit_exceeded",
                            format!(
                                "this API key used its {tpm} tokens per minute; retry in {secs} s"
                            ),
                            secs,
                        ));
                    }
                }
            }
        };
        Ok(Some(Charge {
            key: grant.id.clone(),
            month,
            reservation,
            request_bytes,
            sides,
        }))
    }

    /// The month's count of `key`, read from the store on first use in this month.
    async fn month_used(&self, key: &str, month: &str) -> u64 {
        if let Some(m) = lock(&self.months).get(key).filter(|m| m.month == month) {
            return m.used;
        }
        let stored = match self.repo.month_tokens(key, month).await {
            Ok(n) => n,
            Err(e) => {
                // Fail open for this request only: the next one reads again.
                tracing::warn!(api_key_id = %key, error = %e, "could not read the monthly token count");
                return 0;
            }
        };
        let pending = lock(&self.pending)
            .get(&(key.to_owned(), month.to_owned()))
            .copied()
            .unwrap_or(0);
        let mut months = lock(&self.months);
        let m = months.entry(key.to_owned()).or_insert(MonthUse {
            month: month.to_owned(),
            used: 0,
        });
        if m.month != month {
            *m = MonthUse {
                month: month.to_owned(),
                used: 0,
            };
        }
        // Another request may have loaded it meanwhile: keep the larger count.
        m.used = m.used.max(stored.saturating_add(pending));
        m.used
    }

    /// Settles a finished request: `tokens` used.
    fn settle(&self, charge: Charge, tokens: u64) {
        if let Some(r) = charge.reservation {
            let now_ms = crate::defence::now_ms();
            if let Some((_, bucket)) = lock(&self.tpm).get_mut(&charge.key) {
                bucket.commit(r, tokens, now_ms);
            }
        }
        if tokens == 0 {
            return;
        }
        {
            let mut months = lock(&self.months);
            match months.get_mut(&charge.key) {
                Some(m) if m.month == charge.month => m.used = m.used.saturating_add(tokens),
                _ => {}
            }
        }
        *lock(&self.pending)
            .entry((charge.key, charge.month))
            .or_insert(0) += tokens;
    }

    /// Writes the counted tokens now.
    pub(crate) async fn flush(&self) {
        let _one = self.flushing.lock().await;
        *lock(&self.last_flush) = Instant::now();
        let rows: Vec<(String, String, u64)> = std::mem::take(&mut *lock(&self.pending))
            .into_iter()
            .map(|((k, m), n)| (k, m, n))
            .collect();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.repo.add_month_tokens(&rows).await {
            tracing::warn!(error = %e, rows = rows.len(), "could not store monthly token counts; retrying");
            let mut pending = lock(&self.pending);
            for (k, m, n) in rows {
                *pending.entry((k, m)).or_insert(0) += n;
            }
        }
    }

    /// [`Budgets::flush`] when [`FLUSH_EVERY`] passed since the last one.
    pub(crate) async fn flush_if_due(&self) {
        let due = lock(&self.last_flush).elapsed() >= FLUSH_EVERY;
        if due && !lock(&self.pending).is_empty() {
            self.flush().await;
        }
    }

    /// Forgets the in-memory month counts (they are re-read at the next request):
    /// after a key change, since a rotation carries a month's count to a new key.
    pub(crate) fn forget_months(&self) {
        lock(&self.months).clear();
    }
}

/// Settles `charge` when the body of `resp` ended (or was dropped).
pub(crate) fn settle_when_done(resp: Response, charge: Charge, budgets: Arc<Budgets>) -> Response {
    let failed = resp.status().as_u16() >= 400;
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            charge: Some(charge),
            budgets,
            failed,
            usage: None,
            response_bytes: 0,
        }),
    )
}

struct Counted {
    inner: Body,
    charge: Option<Charge>,
    budgets: Arc<Budgets>,
    failed: bool,
    usage: Option<(u64, u64)>,
    response_bytes: u64,
}

impl Counted {
    fn finish(&mut self) {
        let Some(charge) = self.charge.take() else {
            return;
        };
        let tokens = if self.failed {
            0
        } else if let Some((p, c)) = self.usage {
            p.saturating_add(c)
        } else {
            let response_bytes = if charge.sides == Sides::Request {
                0
            } else {
                self.response_bytes
            };
            charge
                .request_bytes
                .saturating_add(response_bytes)
                .div_ceil(4)
        };
        self.budgets.settle(charge, tokens);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    self.response_bytes = self.response_bytes.saturating_add(n);
                    if let Some(u) = crate::telemetry::usage_tokens(data) {
                        self.usage = Some(u);
                    }
                }
            }
            Poll::Ready(Some(Err(_)) | None) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use chrono::DateTime;
    use flm_core::key_scope::KeyBudget;
    use flm_core::keys::ApiKeyRecord;
    use flm_core::RepoError;

    #[derive(Default)]
    struct Counts {
        rows: Mutex<HashMap<(String, String), u64>>,
    }

    #[async_trait]
    impl ApiKeyRepository for Counts {
        async fn list(&self) -> Result<Vec<ApiKeyRecord>, RepoError> {
            Ok(vec![])
        }
        async fn insert(&self, _: &ApiKeyRecord) -> Result<(), RepoError> {
            Ok(())
        }
        async fn revoke(&self, _: &str, _: DateTime<Utc>) -> Result<bool, RepoError> {
            Ok(false)
        }
        async fn rotate(
            &self,
            _: &str,
            _: &ApiKeyRecord,
            _: DateTime<Utc>,
        ) -> Result<bool, RepoError> {
            Ok(false)
        }
        async fn fingerprint(&self) -> Result<String, RepoError> {
            Ok(String::new())
        }
        async fn month_tokens(&self, id: &str, month: &str) -> Result<u64, RepoError> {
            Ok(*lock(&self.rows)
                .get(&(id.to_owned(), month.to_owned()))
                .unwrap_or(&0))
        }
        async fn add_month_tokens(&self, c: &[(String, String, u64)]) -> Result<(), RepoError> {
            for (k, m, n) in c {
                *lock(&self.rows).entry((k.clone(), m.clone())).or_insert(0) += n;
            }
            Ok(())
        }
    }

    fn grant(tpm: Option<u64>, monthly: Option<u64>) -> KeyGrant {
        KeyGrant {
            budget: KeyBudget::new(tpm, monthly).unwrap(),
            ..KeyGrant::unscoped("key_1")
        }
    }

    #[tokio::test]
    async fn monthly_quota_counts_persist_and_refuse() {
        let repo = Arc::new(Counts::default());
        let b = Budgets::new(repo.clone());
        let g = grant(None, Some(100));
        let chat = Some(RouteClass::Chat);
        // No budget, or a route that spends nothing: nothing to settle.
        assert!(b
            .admit(&grant(None, None), chat, 10, Sides::Both)
            .await
            .unwrap()
            .is_none());
        assert!(b
            .admit(&g, Some(RouteClass::Models), 10, Sides::Both)
            .await
            .unwrap()
            .is_none());
        let c = b.admit(&g, chat, 40, Sides::Both).await.unwrap().unwrap();
        b.settle(c, 60);
        let c = b.admit(&g, chat, 40, Sides::Both).await.unwrap().unwrap();
        b.settle(c, 50);
        let refused = b.admit(&g, chat, 40, Sides::Both).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            refused.extensions().get::<ApiError>().unwrap().code,
            "monthly_quota_exceeded"
        );
        // Written at flush; a new process reads it back and refuses at once.
        b.flush().await;
        let month = month_of(Utc::now());
        assert_eq!(repo.month_tokens("key_1", &month).await.unwrap(), 110);
        let again = Budgets::new(repo.clone());
        assert!(again.admit(&g, chat, 1, Sides::Both).await.is_err());
        // A larger quota admits again.
        assert!(again
            .admit(&grant(None, Some(200)), chat, 1, Sides::Both)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn tokens_per_minute_refuse_then_refill() {
        let b = Budgets::new(Arc::new(Counts::default()));
        let g = grant(Some(60), None); // one token per second
        let chat = Some(RouteClass::Chat);
        let c = b.admit(&g, chat, 8, Sides::Both).await.unwrap().unwrap();
        b.settle(c, 60); // the whole minute
        let refused = b.admit(&g, chat, 8, Sides::Both).await.unwrap_err();
        assert_eq!(
            refused.extensions().get::<ApiError>().unwrap().code,
            "token_rate_limit_exceeded"
        );
        let retry: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=61).contains(&retry), "{retry}");
        // Failed requests and refunds: a small use gives back the reservation.
        let g2 = grant(Some(6000), None);
        let c = b
            .admit(&g2, chat, 4000, Sides::Both)
            .await
            .unwrap()
            .unwrap();
        b.settle(c, 0);
        assert!(b.admit(&g2, chat, 4000, Sides::Both).await.is_ok());
    }

    /// Audio and images count only their text side when the engine gives no usage:
    /// an upload by its transcript, a generated image or speech by its prompt.
    #[tokio::test]
    async fn media_routes_count_only_their_text_side() {
        assert_eq!(Sides::of(Some(RouteClass::Audio), true), Sides::Response);
        assert_eq!(Sides::of(Some(RouteClass::Audio), false), Sides::Request);
        assert_eq!(Sides::of(Some(RouteClass::Images), false), Sides::Request);
        assert_eq!(Sides::of(Some(RouteClass::Chat), true), Sides::Both);
        let repo = Arc::new(Counts::default());
        let b = Arc::new(Budgets::new(repo.clone()));
        let g = grant(None, Some(1_000_000));
        let cases = [
            // An 11 s recording uploaded, 40 bytes of transcript: 10 tokens.
            (Sides::Response, Some(RouteClass::Audio), 352_000, 40, 10),
            // A 40-byte prompt, a 1 MB picture back: 10 tokens.
            (Sides::Request, Some(RouteClass::Images), 40, 1_000_000, 10),
            // Text both ways: (40 + 40) / 4.
            (Sides::Both, Some(RouteClass::Chat), 40, 40, 20),
        ];
        let mut total = 0;
        for (sides, class, request, response, tokens) in cases {
            let c = b.admit(&g, class, request, sides).await.unwrap().unwrap();
            let resp = Response::new(Body::from(vec![b'a'; response]));
            let body = settle_when_done(resp, c, b.clone()).into_body();
            axum::body::to_bytes(body, usize::MAX).await.unwrap();
            total += tokens;
            b.flush().await;
            let month = month_of(Utc::now());
            assert_eq!(
                repo.month_tokens("key_1", &month).await.unwrap(),
                total,
                "{sides:?}"
            );
        }
    }
}
