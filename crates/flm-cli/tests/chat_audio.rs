//! `flm chat --audio FILE`: the real `flm` binary and daemon, a proxy in front of an
//! emulated vLLM serving a speech-recognition model and (when it is built) the REAL
//! whisper.cpp server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{free_port, Env};
use flm_testkit::whisper::WhisperServer;
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_audio_transcribes_through_the_proxy() {
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([
            EmulatedModel::asr("whisper-large-v3"),
            EmulatedModel::chat("test-model"),
        ]),
    )
    .await
    .unwrap();
    let env = Env::new();
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "vllm",
        "--url",
        &vllm.base_url(),
    ])
    .await
    .ok();
    let whisper = match flm_testkit::whisper::assets() {
        Ok(Some(a)) => {
            let server = tokio::task::spawn_blocking(move || WhisperServer::start(&a))
                .await
                .unwrap()
                .expect("whisper-server starts");
            let added = env
                .flm(&[
                    "engines",
                    "add",
                    "--kind",
                    "whispercpp",
                    "--url",
                    &server.base_url(),
                ])
                .await
                .ok();
            assert_eq!(added["kind"], "whispercpp", "{added}");
            Some(server)
        }
        Ok(None) => {
            eprintln!(
                "\n\n*** chat_audio_transcribes_through_the_proxy: the whisper.cpp part is \
                 SKIPPED — FLM_WHISPER_SERVER is not set and no whisper-server is cached: run \
                 scripts/setup-whisper-server.sh ***\n"
            );
            None
        }
        Err(e) => panic!("{e}"),
    };
    let _guard = env.guard();
    env.flm(&["proxy", "start", "--port", &free_port().to_string()])
        .await
        .ok();

    // A small WAV file (a header and silence).
    let wav_path = env.data_dir().join("hello.wav");
    let mut wav = b"RIFF\x24\x7d\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\x7d\0\0".to_vec();
    wav.resize(wav.len() + 32_000, 0);
    std::fs::write(&wav_path, &wav).unwrap();
    let file = wav_path.to_str().unwrap();

    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/whisper-large-v3",
            "--audio",
            file,
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "Hello from vllm whisper-large-v3: transcribed {} bytes of hello.wav\n",
            wav.len()
        )
    );
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/whisper-large-v3",
            "--audio",
            file,
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.json["text"].as_str().unwrap().contains("transcribed"),
        "{}",
        out.stdout
    );

    // Refusals keep the proxy's code; local problems are caught before any request.
    let msg = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--audio",
            file,
        ])
        .await
        .err("transcription_error", 1);
    assert!(msg.contains("does not support Transcriptions"), "{msg}");
    env.flm(&[
        "chat",
        "--model",
        "whisper-1",
        "--audio",
        "/nonexistent.wav",
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    env.flm(&["chat", "--model", "whisper-1", "--audio", file, "--stream"])
        .await
        .err("INVALID_ARGUMENT", 1);

    if let Some(_server) = &whisper {
        // The real whisper.cpp server: its test model has no weights, so the text is
        // empty; `whisper-1` (the OpenAI name) resolves to it.
        let sample = flm_testkit::whisper::assets().unwrap().unwrap().sample;
        let out = env
            .flm(&[
                "chat",
                "--model",
                "whisper-1",
                "--audio",
                sample.to_str().unwrap(),
                "--json",
            ])
            .await;
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.json, serde_json::json!({"text": ""}));
        let out = env
            .flm(&[
                "chat",
                "--model",
                "whisper-1",
                "--audio",
                sample.to_str().unwrap(),
            ])
            .await;
        assert_eq!((out.code, out.stdout.as_str()), (0, "\n"), "{}", out.stderr);
    }
}
