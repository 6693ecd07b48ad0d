//! whisper.cpp's `whisper-server` (`examples/server` of whisper.cpp): speech-to-text
//! only.
//!
//! Its API is small and not OpenAI-shaped: `GET /health` (`{"status":"ok"}`, 503 while
//! the model loads), `POST /inference` (multipart: `file`, `response_format`,
//! `language`, `prompt`, `temperature`, `translate`, …) and `POST /load` (swaps the
//! model: never called by FLM). Every answer carries `Server: whisper.cpp`, which is
//! how detection recognises it. The server has no model listing: it serves the one
//! model it was started with, and does not say which, so FLM lists it as
//! [`WHISPER_MODEL`] — the name OpenAI clients send for speech-to-text, so they work
//! unchanged.
//!
//! Chat and embeddings are refused with a 400-class error naming the engine; the
//! proxy's audio routes reach the server through [`LlmEngine::relay_stream`].

use std::time::Duration;

use async_trait::async_trait;
use flm_core::ports::{LlmEngine, RawBody, RawRequest, RawResponse};
use flm_core::{
    ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse, EngineCapabilities,
    EngineError, EngineId, EngineKind, ModelInfo,
};

use crate::http::{status_error, transport_error, HttpClient};

/// The name under which the loaded model is listed.
pub const WHISPER_MODEL: &str = "whisper-1";

/// The inference route of a `whisper-server` started without `--inference-path`.
pub const INFERENCE_PATH: &str = "/inference";

/// Adapter for a `whisper-server`.
pub struct WhisperEngine {
    id: EngineId,
    base_url: String,
    client: HttpClient,
    timeout: Duration,
}

impl WhisperEngine {
    /// An adapter for the server at `base_url`.
    pub fn new(id: EngineId, base_url: &str, client: HttpClient, timeout: Duration) -> Self {
        Self {
            id,
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            timeout,
        }
    }

    fn refuse(&self, what: &str) -> EngineError {
        EngineError::Api {
            status_code: Some(400),
            message: format!(
                "engine `{}` is a whisper.cpp server: it serves speech-to-text only \
                 (/v1/audio/transcriptions, /v1/audio/translations), not {what}",
                self.id
            ),
        }
    }
}

/// The model a `whisper-server` serves, as FLM lists it.
pub fn whisper_model(id: &EngineId) -> ModelInfo {
    let mut m = ModelInfo::basic(id, EngineKind::WhisperCpp, WHISPER_MODEL);
    m.supports_chat = false;
    m.supports_streaming = false;
    m.audio_inputs = true;
    m.loaded = Some(true);
    m
}

#[async_trait]
impl LlmEngine for WhisperEngine {
    fn id(&self) -> &EngineId {
        &self.id
    }

    fn kind(&self) -> EngineKind {
        EngineKind::WhisperCpp
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn capabilities(&self) -> EngineCapabilities {
        EngineKind::WhisperCpp.default_capabilities()
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, EngineError> {
        let url = format!("{}/health", self.base_url);
        let resp = self
            .client
            .raw()
            .get(&url)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e, &url))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| transport_error(&e, &url))?;
        match status {
            200 => Ok(vec![whisper_model(&self.id)]),
            // Still loading its model: nothing to serve yet.
            503 => Ok(Vec::new()),
            _ => Err(status_error(status, &body, &url)),
        }
    }

    async fn chat(&self, _request: ChatRequest) -> Result<ChatResponse, EngineError> {
        Err(self.refuse("chat completions"))
    }

    async fn chat_stream(&self, _request: ChatRequest) -> Result<ChatStream, EngineError> {
        Err(self.refuse("chat completions"))
    }

    async fn embeddings(
        &self,
        _request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, EngineError> {
        Err(self.refuse("embeddings"))
    }

    async fn relay(&self, request: RawRequest) -> Result<RawResponse, EngineError> {
        crate::relay::relay(&self.client, &self.base_url, request).await
    }

    async fn relay_stream(
        &self,
        request: RawRequest,
        body: RawBody,
    ) -> Result<RawResponse, EngineError> {
        crate::relay::relay_stream(&self.client, &self.base_url, request, body).await
    }
}
