//! Engines: kinds, detected state, statuses, capabilities and models.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ids::{EngineId, ModelId};

/// The engine families FLM knows how to talk to.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Ollama (`/api/*`, NDJSON streams).
    Ollama,
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// LM Studio's server mode.
    #[serde(rename = "lmstudio")]
    LmStudio,
    /// llama.cpp's `llama-server`.
    #[serde(rename = "llamacpp")]
    LlamaCpp,
    /// Any other OpenAI-compatible server (configured explicitly, never auto-detected).
    #[serde(rename = "openai")]
    OpenAi,
    /// whisper.cpp's `whisper-server` (speech-to-text only; configured explicitly).
    #[serde(rename = "whispercpp")]
    WhisperCpp,
}

impl EngineKind {
    /// Every kind, in detection order.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Ollama,
        EngineKind::Vllm,
        EngineKind::LmStudio,
        EngineKind::LlamaCpp,
        EngineKind::OpenAi,
        EngineKind::WhisperCpp,
    ];

    /// The slug used on the command line and in JSON (`ollama`, `vllm`, `lmstudio`,
    /// `llamacpp`, `openai`, `whispercpp`).
    pub fn slug(self) -> &'static str {
        match self {
            EngineKind::Ollama => "ollama",
            EngineKind::Vllm => "vllm",
            EngineKind::LmStudio => "lmstudio",
            EngineKind::LlamaCpp => "llamacpp",
            EngineKind::OpenAi => "openai",
            EngineKind::WhisperCpp => "whispercpp",
        }
    }

    /// Human name.
    pub fn display_name(self) -> &'static str {
        match self {
            EngineKind::Ollama => "Ollama",
            EngineKind::Vllm => "vLLM",
            EngineKind::LmStudio => "LM Studio",
            EngineKind::LlamaCpp => "llama.cpp",
            EngineKind::OpenAi => "OpenAI-compatible",
            EngineKind::WhisperCpp => "whisper.cpp",
        }
    }

    /// Message shown when an engine of this kind cannot be reached (spec 10-engines §4.1).
    pub fn unreachable_message(self) -> &'static str {
        match self {
            EngineKind::Ollama => "Ollama is not installed or is stopped",
            EngineKind::Vllm => "Cannot connect to the vLLM API",
            EngineKind::LmStudio => "Cannot connect to the LM Studio API",
            EngineKind::LlamaCpp => "llama.cpp HTTP server is not running",
            EngineKind::OpenAi => "Cannot connect to the engine API",
            EngineKind::WhisperCpp => "whisper.cpp server is not running",
        }
    }

    /// Default capabilities of the kind (spec 10-engines §5.1); models refine them.
    pub fn default_capabilities(self) -> EngineCapabilities {
        let base = EngineCapabilities {
            chat: true,
            chat_stream: true,
            embeddings: true,
            ..EngineCapabilities::default()
        };
        match self {
            EngineKind::Ollama => EngineCapabilities {
                tools: true,
                vision_inputs: true,
                audio_inputs: true,
                reasoning: true,
                max_image_bytes: Some(8 * 1024 * 1024),
                max_audio_bytes: Some(25 * 1024 * 1024),
                ..base
            },
            // vLLM serves `/v1/audio/transcriptions` and `/translations` when it runs
            // an ASR (Whisper-family) model; with another model it refuses them itself.
            EngineKind::Vllm => EngineCapabilities {
                tools: true,
                transcription: true,
                ..base
            },
            EngineKind::LmStudio => EngineCapabilities {
                vision_inputs: true,
                max_image_bytes: Some(4 * 1024 * 1024),
                ..base
            },
            EngineKind::LlamaCpp => base,
            // A configured OpenAI-compatible server (LocalAI, vLLM-Omni…) is offered
            // every OpenAI route; it refuses those it lacks itself.
            EngineKind::OpenAi => EngineCapabilities {
                transcription: true,
                image_generation: true,
                audio_outputs: true,
                ..base
            },
            // Speech-to-text only: no chat, no embeddings.
            EngineKind::WhisperCpp => EngineCapabilities {
                transcription: true,
                max_audio_bytes: Some(25 * 1024 * 1024),
                ..EngineCapabilities::default()
            },
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

impl FromStr for EngineKind {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_', '.', ' '], "");
        match norm.as_str() {
            "ollama" => Ok(EngineKind::Ollama),
            "vllm" => Ok(EngineKind::Vllm),
            "lmstudio" => Ok(EngineKind::LmStudio),
            "llamacpp" | "llamaserver" => Ok(EngineKind::LlamaCpp),
            "openai" | "openaicompatible" => Ok(EngineKind::OpenAi),
            "whispercpp" | "whisperserver" | "whisper" => Ok(EngineKind::WhisperCpp),
            _ => Err(CoreError::InvalidInput(format!(
                "unknown engine kind `{s}`: expected one of ollama, vllm, lmstudio, llamacpp, openai, whispercpp"
            ))),
        }
    }
}

/// Feature flags of an engine (spec 10-engines §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineCapabilities {
    /// Chat completions.
    pub chat: bool,
    /// Streaming chat completions.
    pub chat_stream: bool,
    /// Embeddings.
    pub embeddings: bool,
    /// Moderation.
    pub moderation: bool,
    /// Tool / function calling.
    pub tools: bool,
    /// Reasoning ("thinking") output.
    pub reasoning: bool,
    /// Images as chat input.
    pub vision_inputs: bool,
    /// Audio as chat input.
    pub audio_inputs: bool,
    /// Audio in responses, and text-to-speech (`/v1/audio/speech`).
    pub audio_outputs: bool,
    /// Speech-to-text: `/v1/audio/transcriptions` and `/v1/audio/translations`.
    pub transcription: bool,
    /// Image generation: `/v1/images/generations`.
    pub image_generation: bool,
    /// Largest image the engine accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_image_bytes: Option<u64>,
    /// Largest audio payload the engine accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_audio_bytes: Option<u64>,
}

/// Where an engine came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineSource {
    /// Found by probing the kind's default address.
    Default,
    /// Added by the user with `flm engines add`.
    Configured,
}

/// An address to probe for one engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineTarget {
    /// Engine id the result is reported under.
    pub id: EngineId,
    /// Expected kind; the probe must confirm it.
    pub kind: EngineKind,
    /// Base URL without a trailing `/` (e.g. `http://127.0.0.1:11434`).
    pub base_url: String,
    /// Default-port probe or configured endpoint.
    pub source: EngineSource,
}

/// Detected status — exactly one of the five of spec 10-engines §3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum EngineStatus {
    /// The binary is installed but its API does not answer.
    InstalledOnly,
    /// The API answers well-formed JSON below the latency threshold.
    RunningHealthy {
        /// Latency of the model-listing request.
        latency_ms: u64,
    },
    /// The API answers but is slow, busy, loading or otherwise impaired.
    RunningDegraded {
        /// Latency of the model-listing request.
        latency_ms: u64,
        /// Why it is degraded.
        reason: String,
    },
    /// The engine cannot be reached.
    ErrorNetwork {
        /// What failed.
        reason: String,
        /// Consecutive failed checks, this one included.
        consecutive_failures: u32,
    },
    /// The engine answers, but not with what its API promises.
    ErrorApi {
        /// What was wrong.
        reason: String,
    },
}

impl EngineStatus {
    /// Name of the status (`RunningHealthy`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EngineStatus::InstalledOnly => "InstalledOnly",
            EngineStatus::RunningHealthy { .. } => "RunningHealthy",
            EngineStatus::RunningDegraded { .. } => "RunningDegraded",
            EngineStatus::ErrorNetwork { .. } => "ErrorNetwork",
            EngineStatus::ErrorApi { .. } => "ErrorApi",
        }
    }

    /// Whether requests can be sent to the engine.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            EngineStatus::RunningHealthy { .. } | EngineStatus::RunningDegraded { .. }
        )
    }

    /// Latency of the last check, when the engine answered.
    pub fn latency_ms(&self) -> Option<u64> {
        match self {
            EngineStatus::RunningHealthy { latency_ms }
            | EngineStatus::RunningDegraded { latency_ms, .. } => Some(*latency_ms),
            _ => None,
        }
    }

    /// Reason text, when there is one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            EngineStatus::RunningDegraded { reason, .. }
            | EngineStatus::ErrorNetwork { reason, .. }
            | EngineStatus::ErrorApi { reason } => Some(reason),
            _ => None,
        }
    }
}

/// What detection knows about one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Engine id.
    pub id: EngineId,
    /// Engine kind.
    pub kind: EngineKind,
    /// Human name (`Ollama`, `llama.cpp`…).
    pub name: String,
    /// Engine version, when the engine tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Detected status.
    #[serde(flatten)]
    pub status: EngineStatus,
    /// API base URL (absent for an installed-only engine without a known address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Installed binary, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_path: Option<String>,
    /// Default probe or configured endpoint.
    pub source: EngineSource,
    /// Capabilities of the engine.
    pub capabilities: EngineCapabilities,
    /// Number of models the engine listed during the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_count: Option<usize>,
    /// Whether each of the last checks (at most 3, newest last) was degraded; drives
    /// the "3 good checks to recover" rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_degraded: Vec<bool>,
    /// When the check ran.
    pub checked_at: DateTime<Utc>,
}

/// One model served by an engine (spec 10-engines §1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Canonical id `flm://{engine_id}/{model}`.
    pub id: ModelId,
    /// Engine serving it.
    pub engine_id: EngineId,
    /// Kind of that engine.
    pub engine_kind: EngineKind,
    /// The engine's own name for the model.
    pub name: String,
    /// Name for display.
    pub display_name: String,
    /// Context window in tokens (runtime value when the engine tells, else trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// The model can chat.
    pub supports_chat: bool,
    /// The model can stream chat.
    pub supports_streaming: bool,
    /// The model produces embeddings.
    pub supports_embeddings: bool,
    /// The model accepts images.
    pub vision: bool,
    /// The model accepts audio.
    pub audio_inputs: bool,
    /// Whether `vision` and `audio_inputs` come from the engine's own report (Ollama
    /// `/api/show` capabilities, llama-server `/props` modalities, LM Studio's model
    /// type). When false they are guesses (name hints), and the proxy lets the engine
    /// decide instead of refusing images or audio itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub modalities_known: bool,
    /// The model can call tools.
    pub tools: bool,
    /// The model emits reasoning.
    pub reasoning: bool,
    /// Whether the model is loaded in memory, when the engine tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<bool>,
    /// Size on disk in bytes, when the engine tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

impl ModelInfo {
    /// A chat model with no metadata beyond its name; adapters fill in what they know.
    pub fn basic(engine_id: &EngineId, kind: EngineKind, name: &str) -> Self {
        Self {
            id: ModelId::new(engine_id.clone(), name),
            engine_id: engine_id.clone(),
            engine_kind: kind,
            name: name.to_owned(),
            display_name: name.to_owned(),
            context_length: None,
            supports_chat: true,
            supports_streaming: true,
            supports_embeddings: false,
            vision: false,
            audio_inputs: false,
            modalities_known: false,
            tools: false,
            reasoning: false,
            loaded: None,
            size_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parses_loosely_and_prints_slug() {
        assert_eq!(
            "LM Studio".parse::<EngineKind>().unwrap(),
            EngineKind::LmStudio
        );
        assert_eq!(
            "llama.cpp".parse::<EngineKind>().unwrap(),
            EngineKind::LlamaCpp
        );
        assert_eq!("vLLM".parse::<EngineKind>().unwrap(), EngineKind::Vllm);
        assert_eq!(
            "whisper.cpp".parse::<EngineKind>().unwrap(),
            EngineKind::WhisperCpp
        );
        assert!("gpt".parse::<EngineKind>().is_err());
        for k in EngineKind::ALL {
            assert_eq!(k.slug().parse::<EngineKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.slug())
            );
        }
    }

    #[test]
    fn status_serialises_flat() {
        let s = EngineStatus::RunningDegraded {
            latency_ms: 7,
            reason: "Loading model".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], "RunningDegraded");
        assert_eq!(v["latency_ms"], 7);
        let back: EngineStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
