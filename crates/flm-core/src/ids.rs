//! Engine and model identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Identifier of one engine instance, e.g. `ollama-default` or `vllm-1`.
///
/// Lower-case ASCII letters, digits, `-`, `_` and `.`, 1–64 characters, starting with a
/// letter or digit: it appears in URLs (`/engine/{id}/…`) and model ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EngineId(String);

impl EngineId {
    /// Validates and wraps an engine id.
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let ok_len = !raw.is_empty() && raw.len() <= 64;
        let ok_first = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if ok_len && ok_first && ok_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(CoreError::InvalidInput(format!(
                "invalid engine id `{raw}`: use 1-64 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit"
            )))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Canonical model id `flm://{engine_id}/{model}`.
///
/// The model part is the engine's own name and may itself contain `/`
/// (`flm://vllm-1/meta-llama/Llama-3.1-8B-Instruct`): only the first `/` after the
/// engine id separates the two.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelId {
    /// Engine serving the model.
    pub engine_id: EngineId,
    /// The engine's own model name.
    pub model: String,
}

/// Scheme prefix of canonical model ids.
pub const MODEL_ID_SCHEME: &str = "flm://";

impl ModelId {
    /// Builds a model id from its parts.
    pub fn new(engine_id: EngineId, model: impl Into<String>) -> Self {
        Self {
            engine_id,
            model: model.into(),
        }
    }

    /// Parses `flm://{engine_id}/{model}`.
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let rest = raw.strip_prefix(MODEL_ID_SCHEME).ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "invalid model id `{raw}`: expected the form flm://{{engine_id}}/{{model}}"
            ))
        })?;
        let (engine, model) = rest.split_once('/').ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "invalid model id `{raw}`: missing `/{{model}}` after the engine id"
            ))
        })?;
        if model.is_empty() {
            return Err(CoreError::InvalidInput(format!(
                "invalid model id `{raw}`: the model name is empty"
            )));
        }
        Ok(Self::new(EngineId::parse(engine)?, model))
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MODEL_ID_SCHEME}{}/{}", self.engine_id, self.model)
    }
}

impl Serialize for ModelId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ModelId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_round_trip_keeps_slashes_in_model() {
        let id = ModelId::parse("flm://vllm-1/meta-llama/Llama-3.1-8B").unwrap();
        assert_eq!(id.engine_id.as_str(), "vllm-1");
        assert_eq!(id.model, "meta-llama/Llama-3.1-8B");
        assert_eq!(id.to_string(), "flm://vllm-1/meta-llama/Llama-3.1-8B");
    }

    #[test]
    fn model_id_rejects_bad_shapes() {
        for bad in [
            "llama3",
            "flm://",
            "flm://ollama-default",
            "flm://ollama-default/",
            "flm://Bad Id/x",
            "http://a/b",
        ] {
            assert!(ModelId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn engine_id_rules() {
        assert!(EngineId::parse("ollama-default").is_ok());
        assert!(EngineId::parse("gpu.box_2").is_ok());
        assert!(EngineId::parse("").is_err());
        assert!(EngineId::parse("-x").is_err());
        assert!(EngineId::parse("Upper").is_err());
        assert!(EngineId::parse(&"a".repeat(65)).is_err());
    }
}
