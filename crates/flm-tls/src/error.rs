//! The crate's one error type.
//!
//! Every variant that is about a file names that file, so a message such as
//! "`/home/a/.flm/certs/server.key` does not match the certificate in `…/server.pem`"
//! can be shown to a user as it is.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Result alias used throughout the crate.
pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// What went wrong while creating, loading or installing certificate material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read (missing, permission denied, …).
    #[error("cannot read `{}`: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM section at all (binary DER, garbage, empty file).
    #[error("`{}` is not a PEM file (no `-----BEGIN …-----` section found)", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
    },
    /// The file is PEM but holds no `CERTIFICATE` section.
    #[error("`{}` contains no certificate (no `CERTIFICATE` PEM section): the chain is empty", path.display())]
    EmptyChain {
        /// The file.
        path: PathBuf,
    },
    /// The file is PEM but holds no private key section.
    #[error("`{}` contains no private key (no `PRIVATE KEY` PEM section)", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A `CERTIFICATE` section is not a valid X.509 certificate.
    #[error("`{}` holds an invalid certificate: {reason}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The private key cannot be used (malformed or an unsupported algorithm).
    #[error("`{}` holds an unusable private key: {reason}", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// What the key loader said.
        reason: String,
    },
    /// The private key is not the key of the (first) certificate.
    #[error("the private key in `{}` does not match the certificate in `{}`", key_path.display(), cert_path.display())]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },
    /// The certificate's validity period has ended.
    #[error("the certificate in `{}` expired at {not_after}", path.display())]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// End of validity.
        not_after: DateTime<Utc>,
    },
    /// The certificate's validity period has not started yet (wrong clock?).
    #[error("the certificate in `{}` is not valid before {not_before} (check the system clock)", path.display())]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// Start of validity.
        not_before: DateTime<Utc>,
    },
    /// A certificate that should be a CA is not one (no `CA:TRUE` basic constraint).
    #[error("`{}` is not a CA certificate (basic constraints lack `CA:TRUE`)", path.display())]
    NotACa {
        /// The certificate file.
        path: PathBuf,
    },
    /// One of the two files of the local CA exists and the other does not.
    ///
    /// The CA is never silently replaced: a new CA is not trusted by clients that
    /// trusted the old one, so the user has to decide (restore the file, or remove both
    /// and install the new CA again).
    #[error("the local CA is incomplete: `{}` is missing (restore it, or delete `{}` too to create a new CA, which must then be installed in the trust store again)", missing.display(), present.display())]
    CaIncomplete {
        /// The file that is missing.
        missing: PathBuf,
        /// The file that exists.
        present: PathBuf,
    },
    /// A subject alternative name is not a valid DNS name or IP address.
    #[error("invalid subject alternative name `{value}`: {reason}")]
    InvalidSan {
        /// The offending value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Certificate generation failed inside `rcgen`.
    #[error("cannot generate certificate: {0}")]
    Generate(String),
    /// `rustls` rejected the configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(String),
    /// No known trust-store layout was found under the given root.
    #[error("no supported OS trust store found under `{}` (looked for the Debian/Ubuntu, Fedora/RHEL, Arch and openSUSE layouts)", root.display())]
    NoTrustStore {
        /// The filesystem root that was searched.
        root: PathBuf,
    },
    /// The trust-store refresh command could not be started or failed.
    #[error("`{command}` failed: {detail}")]
    TrustCommand {
        /// The command line, space-joined.
        command: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// Trust-store registration is not implemented for this OS.
    #[error("installing a CA into the OS trust store is not supported on this platform ({0})")]
    UnsupportedPlatform(&'static str),
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        TlsError::Generate(e.to_string())
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e.to_string())
    }
}
