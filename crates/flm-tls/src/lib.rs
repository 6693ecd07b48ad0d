//! Certificate material for FLM's HTTPS modes (spec 30-proxy §10, 70-packaging §3).
//!
//! A library, not a server: it creates, stores, checks and loads certificates, builds
//! the `rustls` [`ServerConfig`](rustls::ServerConfig) the proxy's HTTPS listener uses,
//! and registers the local root CA in the OS trust store. The proxy (`flm-proxy`) owns
//! the listeners, the HTTP→HTTPS redirect and the `certificates` table.
//!
//! # Modes
//!
//! | Proxy mode | Function | Files in the certificate directory |
//! |---|---|---|
//! | `dev-selfsigned` | [`ensure_self_signed`] | `dev-cert.pem`, `dev-key.pem` |
//! | `packaged-ca` | [`ensure_local_ca`] + [`issue_server_cert`] | `flm-ca.crt`, `flm-ca.key`, `server.pem`, `server.key` |
//! | `https-acme` | [`load_bundle`] on the files the ACME client wrote | (the ACME client's) |
//!
//! Every mode ends in a [`CertBundle`], which goes to [`rustls_server_config`] or a
//! [`ReloadableResolver`], and to [`CertificateRecord::from_bundle`] for the
//! `certificates` table. The directory is created 0700, keys are written 0600, every
//! file is written atomically (temporary file + rename).
//!
//! # Design choices
//!
//! - **Short-lived server certificates, reused across restarts.** Server certificates
//!   are valid [`LEAF_VALIDITY_DAYS`] (90) days and are reused while more than
//!   [`RENEW_BEFORE_DAYS`] (20) days remain and they name every requested address. 90
//!   days matches what ACME issues, so all modes renew on the same schedule; 20 days is
//!   the ACME renewal threshold of spec 30-proxy §10.3, and leaves several daily
//!   renewal ticks to recover if one renewal fails. Reuse (rather than a new
//!   certificate per start) keeps the fingerprint stable, so a user who pinned or
//!   imported a `dev-selfsigned` certificate is not asked again at every restart. The
//!   rejected alternative, the 365-day server certificate of 70-packaging §3.2, buys
//!   nothing once the CA is trusted and rotation is automatic, and would keep a leaked
//!   server key usable for a year.
//! - **A per-machine CA whose key never leaves the machine** (`packaged-ca`). The CA is
//!   created on first use, its key is stored 0600 next to the server certificate and
//!   is never exported, logged or sent anywhere: whoever holds it can impersonate
//!   *any* HTTPS site to this machine, because the CA is in the OS trust store. It is
//!   constrained to `pathlen:0` (it cannot create sub-CAs). The rejected alternative is
//!   spec 70-packaging §3.1's single CA built in CI and shipped in every installer:
//!   the running proxy must sign server certificates, so that CA's key would have to
//!   be on every user's machine, and one leak would compromise every installation.
//!   With a per-machine CA a leak affects one machine. The installer (or `flm security
//!   install-ca`) registers the machine's own CA with [`trust::install_ca`].
//! - **An existing CA is never replaced silently**; a server certificate is. Replacing
//!   the CA would break trust on every client that imported it, so a damaged CA is an
//!   error for the user to resolve ([`TlsError::CaIncomplete`]); a damaged or stale
//!   server certificate is just reissued.
//! - **Hot reload** via [`ReloadableResolver`] (`arc-swap`): renewals take effect at
//!   the next handshake without closing the listener.
//! - **`ring`** is the only crypto provider (not `aws-lc-rs`): no C/CMake build, the
//!   same provider reqwest's rustls already uses in this workspace, and every config is
//!   built with an explicit provider so the process-wide default does not matter.
//! - **ECDSA P-256** keys everywhere: fast handshakes and universally accepted.
//! - IP SANs name single addresses; the RFC 1918 *ranges* of spec 30-proxy §10.5 cannot
//!   be expressed, so the machine's actual private addresses are included instead
//!   (see [`issue_server_cert`]).
//!
//! # What is not tested here
//!
//! Trust-store changes on the real system (tests use a temporary root and never run
//! `update-ca-certificates` & co.), the macOS and Windows trust-store commands (only
//! their command lines are tested: this project builds and tests on Linux), and
//! browsers. TLS handshakes are tested for real with rustls clients and `curl`.

#![deny(missing_docs)]

mod bundle;
mod ca;
mod describe;
mod error;
mod fs;
mod gen;
mod inspect;
mod record;
mod san;
mod selfsigned;
mod server;
pub mod trust;

pub use bundle::{load_bundle, load_bundle_at, CertBundle};
pub use ca::{create_local_ca, ensure_local_ca, issue_server_cert, load_local_ca, LocalCa};
pub use describe::{describe_certificate, CertSummary};
pub use error::{Result, TlsError};
pub use inspect::sha256_fingerprint;
pub use record::{record_id, CertMode, CertificateRecord, LOCAL_CA_RECORD_ID};
pub use san::{server_sans, San};
pub use selfsigned::ensure_self_signed;
pub use server::{rustls_server_config, ReloadableResolver, ALPN_HTTP11};

/// Validity of server certificates, in days.
pub const LEAF_VALIDITY_DAYS: i64 = 90;
/// A certificate with this many days left or fewer is replaced.
pub const RENEW_BEFORE_DAYS: i64 = 20;
/// Validity of the local root CA, in days (10 years).
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Certificates start this many minutes before their creation, to tolerate clients
/// whose clock is slightly behind.
pub const BACKDATE_MINUTES: i64 = 60;

/// Common name of the local root CA. Spec 70-packaging §3.4 finds the CA by this name
/// when removing it by hand (`security delete-certificate -c "FLM Local CA"`, Windows
/// subject filter), so it must keep containing "FLM Local CA".
pub const CA_COMMON_NAME: &str = "FLM Local CA";
/// Common name of `packaged-ca` server certificates.
pub const SERVER_COMMON_NAME: &str = "FLM Proxy Server";
/// Common name of the `dev-selfsigned` certificate.
pub const SELF_SIGNED_COMMON_NAME: &str = "FLM Development Certificate";
/// Organisation of every certificate FLM creates.
pub const ORGANIZATION: &str = "FLM";

/// `dev-selfsigned` certificate file.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// `dev-selfsigned` key file (0600).
pub const DEV_KEY_FILE: &str = "dev-key.pem";
/// Local root CA certificate file (public; what clients import).
pub const CA_CERT_FILE: &str = "flm-ca.crt";
/// Local root CA key file (0600; never leaves the machine).
pub const CA_KEY_FILE: &str = "flm-ca.key";
/// `packaged-ca` server certificate file (spec 70-packaging §3.2).
pub const SERVER_CERT_FILE: &str = "server.pem";
/// `packaged-ca` server key file (0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// File name of the CA in a Linux anchor directory (spec 70-packaging §3.3/§3.4).
pub const TRUST_STORE_FILE_NAME: &str = "flm-ca.crt";
