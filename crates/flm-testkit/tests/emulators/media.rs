//! The OpenAI-shaped image and speech server.

use flm_testkit::media::{MediaServer, IMAGE_MODEL, PNG_B64, SAMPLES_PER_WORD, SPEECH_MODEL};
use serde_json::{json, Value};

use crate::common::{client, get_json, post};

#[tokio::test]
async fn images_and_speech_follow_the_openai_shapes() {
    let server = MediaServer::start().await.unwrap();
    let c = client();
    let base = server.base_url();
    let (_, list) = get_json(&c, format!("{base}/v1/models")).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [IMAGE_MODEL, SPEECH_MODEL]);

    let (s, body) = post(
        &c,
        format!("{base}/v1/images/generations"),
        &json!({"model": IMAGE_MODEL, "prompt": "a cat", "n": 3}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][0]["b64_json"], PNG_B64);
    assert!(v["created"].is_i64());
    let (s, body) = post(
        &c,
        format!("{base}/v1/images/generations"),
        &json!({"model": "other", "prompt": "a cat"}),
    )
    .await;
    assert_eq!(s, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");

    let r = c
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": SPEECH_MODEL, "input": "one two three", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let audio = r.bytes().await.unwrap();
    assert_eq!(&audio[..4], b"RIFF");
    assert_eq!(audio.len(), 44 + 3 * SAMPLES_PER_WORD * 2);
    let (s, body) = post(
        &c,
        format!("{base}/v1/audio/speech"),
        &json!({"model": SPEECH_MODEL, "input": "x"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("voice"), "{body}");
    assert_eq!(server.bodies_on("/v1/audio/speech").len(), 2);
}
