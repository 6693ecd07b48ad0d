"""Drives FLM's audio and image routes with the official `openai` Python SDK.

Environment: FLM_BASE_URL (…/v1), FLM_API_KEY, FLM_AUDIO_FILE (a WAV file),
FLM_WHISPER_MODEL (model id served by a real whisper.cpp server), FLM_ASR_MODEL (a
Whisper-family model on an emulated vLLM), FLM_SPEECH_MODEL and FLM_IMAGE_MODEL (an
OpenAI-compatible media server), FLM_TEXT_ONLY_MODEL (a model whose engine has none
of these capabilities). Prints one JSON line per check and exits non-zero on the
first failure.
"""
import base64
import json
import os
import sys

import openai
from openai import OpenAI


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:300]}), flush=True)
    if not ok:
        sys.exit(1)


client = OpenAI(
    base_url=os.environ["FLM_BASE_URL"], api_key=os.environ["FLM_API_KEY"], max_retries=0, timeout=60
)
audio = os.environ["FLM_AUDIO_FILE"]
size = os.path.getsize(audio)
name = os.path.basename(audio)
whisper = os.environ["FLM_WHISPER_MODEL"]
asr = os.environ["FLM_ASR_MODEL"]

# The real whisper.cpp server: its test model has no weights, so the text is empty.
with open(audio, "rb") as f:
    r = client.audio.transcriptions.create(model=whisper, file=f)
check("whisper transcription", isinstance(r.text, str) and r.text == "", r)
with open(audio, "rb") as f:
    r = client.audio.transcriptions.create(model=whisper, file=f, response_format="verbose_json", language="en")
# The duration is computed by whisper.cpp from the samples it received: the whole file.
check("whisper verbose_json", r.text == "" and abs(r.duration - 11.0) < 0.1 and r.language == "english", r)
with open(audio, "rb") as f:
    r = client.audio.transcriptions.create(model=whisper, file=f, response_format="text")
check("whisper text format", isinstance(r, str), repr(r))
with open(audio, "rb") as f:
    r = client.audio.translations.create(model=whisper, file=f)
check("whisper translation", isinstance(r.text, str) and r.text == "", r)

# vLLM's own routes (emulated): the answer names the bytes the engine received.
with open(audio, "rb") as f:
    r = client.audio.transcriptions.create(model=asr, file=f, temperature=0)
check("vllm transcription", r.text.endswith(f"transcribed {size} bytes of {name}"), r.text)
with open(audio, "rb") as f:
    r = client.audio.translations.create(model=asr, file=f)
check("vllm translation", r.text.endswith(f"translated {size} bytes of {name}"), r.text)

# Text-to-speech: binary audio streamed back.
r = client.audio.speech.create(
    model=os.environ["FLM_SPEECH_MODEL"], voice="alloy", input="hello from the proxy", response_format="wav"
)
data = r.content
check("speech wav", data[:4] == b"RIFF" and len(data) == 44 + 4 * 1600 * 2, len(data))
with client.audio.speech.with_streaming_response.create(
    model=os.environ["FLM_SPEECH_MODEL"], voice="alloy", input="two words", response_format="pcm"
) as resp:
    chunks = list(resp.iter_bytes())
check("speech streamed pcm", sum(len(c) for c in chunks) == 2 * 1600 * 2, [len(c) for c in chunks])

# Image generation.
r = client.images.generate(model=os.environ["FLM_IMAGE_MODEL"], prompt="a red square", n=2, size="256x256")
png = base64.b64decode(r.data[0].b64_json)
check("images.generate", len(r.data) == 2 and png[:8] == b"\x89PNG\r\n\x1a\n", r)

# An engine without the capability: a precise 400.
try:
    client.images.generate(model=whisper, prompt="a red square")
    check("image on whisper refused", False, "no error")
except openai.BadRequestError as e:
    check("image on whisper refused", e.code == "unsupported_modality" and "images/generations" in e.message, e)
try:
    with open(audio, "rb") as f:
        client.audio.transcriptions.create(model=os.environ["FLM_TEXT_ONLY_MODEL"], file=f)
    check("transcription on a text engine refused", False, "no error")
except openai.BadRequestError as e:
    check("transcription on a text engine refused", e.code == "unsupported_modality", e)

print(json.dumps({"done": True}), flush=True)
