//! Services: the business rules, written against ports only.

pub mod config_service;
pub mod detection;
pub mod engine_service;
pub mod health_service;
pub mod key_service;
pub mod security_service;
pub mod usage_service;

pub use config_service::{ConfigEntry, ConfigService, ValueSource};
pub use detection::{classify, DetectionThresholds};
pub use engine_service::{
    DetectOptions, DetectionReport, EngineService, EngineServiceParts, ModelListing,
    ModelListingError,
};
pub use health_service::{HealthHistory, HealthHistoryService, HealthSummary};
pub use key_service::{KeyLimits, KeyLimitsChange, KeyService, LimitChange};
pub use security_service::{
    BlockKind, ClearedBlocks, PolicyDocument, PolicyRules, SecurityService, SecurityServiceParts,
    SecuritySummary, MAX_PAGE,
};
pub use usage_service::{UsageGroup, UsagePoint, UsageReport, UsageService};
