//! The app's JSON API (`/api/v1/*`), served only on the daemon's loopback UI listener,
//! behind the session guard (cookie + CSRF header + Host/Origin checks). The shapes are
//! those of `ui/src/api/types.ts`; every error is a [`UiError`] envelope.

pub mod error;
pub mod profiles;
pub mod security;
pub mod setup;
#[cfg(test)]
mod ts;
pub mod usage;

pub use error::{with_request_id, FieldError, UiError};
