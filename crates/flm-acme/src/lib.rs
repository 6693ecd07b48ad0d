//! ACME (RFC 8555) certificates for FLM's `https-acme` mode (spec 30-proxy §10.3/§10.4).
//!
//! A library: it talks to the ACME server, answers challenges and writes the
//! certificate files. The proxy (`flm-proxy`) owns the listeners, mounts
//! [`http01_router`] on its HTTP port, schedules renewals, records the result in the
//! `certificates` table ([`flm_tls::CertificateRecord::from_bundle`] with
//! [`flm_tls::CertMode::Acme`]) and continues the fallback order after step 1.
//!
//! # Flow of [`obtain`]
//!
//! 1. Validate [`AcmeConfig`] (email, FQDNs, wildcard ⇒ DNS-01, `https` directory).
//! 2. Fetch the directory ([`AcmeError::DirectoryUnreachable`] names URL and cause).
//! 3. Load the account stored in `state_dir` (`acme-account-<hash>.json`, 0600, one per
//!    directory URL) or register one.
//! 4. New order; for each pending authorization publish the answer: HTTP-01 in the
//!    shared [`Http01Responder`], DNS-01 as `_acme-challenge.<domain>.` TXT through a
//!    [`DnsProvider`] ([`HookDnsProvider`], [`ChallTestSrvDnsProvider`]), then wait for
//!    propagation (≤ 120 s).
//! 5. Mark the challenges ready; poll the order (250 ms, ×1.5, capped at 5 s). An
//!    invalid order becomes [`AcmeError::ChallengeFailed`] with the domain and the
//!    CA's validation error.
//! 6. Finalize with a CSR for a fresh ECDSA P-256 key (`rcgen`), download the chain,
//!    write `acme-<domain>.crt` (0644) and `acme-<domain>.key` (0600) atomically, load
//!    them with [`flm_tls::load_bundle`] and return the [`CertBundle`](flm_tls::CertBundle).
//!
//! Everything is bounded by [`AcmeConfig::timeout`] (90 s, plus the DNS propagation
//! wait); answers are withdrawn whatever the outcome.
//!
//! # Fallback (spec 30-proxy §10.4) and renewal
//!
//! [`obtain_or_reuse`] is step 1: when issuance fails it keeps the existing,
//! unexpired certificate for the same names ([`Obtained::Reused`], with the error for
//! `last_error`). Steps 2 (`dev-selfsigned`, `flm_tls::ensure_self_signed`) and 3
//! belong to the proxy/CLI. [`needs_renewal`] (≤ 20 days left) is what the proxy checks
//! at start and every 24 h; "2 consecutive failures → `AcmeError`" is the proxy's
//! counter over calls to this crate.
//!
//! # Design choices
//!
//! - **`instant-acme` with `reqwest` underneath**, not its default `hyper-rustls` +
//!   `aws-lc-rs` client: one TLS stack (rustls + `ring`) for the whole workspace, no
//!   C/CMake build, and pebble's test root is added with one call. The rejected
//!   alternative, shelling out to `lego`/`certbot`, adds a runtime dependency and parses
//!   their output for errors.
//! - **Precise errors over retries inside the library.** Each failure names what to
//!   fix ([`AcmeError`]); [`AcmeError::is_transient`] tells the caller whether retrying
//!   later can help. The library never retries a failed issuance by itself, because the
//!   CA's rate limits (5 failed validations per hour per account on Let's Encrypt) make
//!   blind retries harmful.
//! - **A fresh certificate key at every issuance**, never reused across renewals: a
//!   leaked key stops being useful at the next renewal.
//! - **DNS-01 through a port trait.** The hook contract ([`HookDnsProvider`]) covers any
//!   DNS host with a ten-line script; provider SDKs are not linked in.
//!
//! # What is not tested here
//!
//! Tests run against Debian's real `pebble` and `pebble-challtestsrv` on loopback
//! (HTTP-01, DNS-01 with a wildcard, account reuse, unreachable server, wrong challenge
//! answer, fallback). Not covered: real Let's Encrypt (staging or production: needs a
//! public domain and port 80 reachable from the internet), its rate limits and CAA
//! checks, real DNS propagation delays, the port 80 forwarding of spec 30-proxy §10.3
//! (proxy/CLI), and a real DNS host behind [`HookDnsProvider`] (its contract is tested
//! with a script).

#![deny(missing_docs)]

mod account;
mod client;
mod config;
mod dns;
mod error;
mod fs;
mod http01;
mod issue;

pub use account::account_path;
pub use config::{
    directory_url_from_env, normalize_domain, validate_email, AcmeConfig, Challenge,
    DEFAULT_TIMEOUT, ENV_DIRECTORY, ENV_USE_PROD, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
    MAX_DOMAINS, MAX_PROPAGATION_WAIT,
};
pub use dns::{ChallTestSrvDnsProvider, DnsError, DnsProvider, HookDnsProvider};
pub use error::{AcmeError, Result};
pub use http01::{http01_router, Http01Responder, HTTP01_PATH_PREFIX};
pub use issue::{
    cert_paths, existing_certificate, needs_renewal, obtain, obtain_or_reuse, IssuedCert, Obtained,
};
