"""Drives an FLM proxy with the official `openai` Python SDK.

Environment: FLM_BASE_URL (…/v1), FLM_API_KEY, FLM_CHAT_MODELS (comma-separated
flm:// ids), FLM_EMBED_MODELS, FLM_BROKEN_MODEL (a model whose engine fails
mid-stream). Prints one JSON line per check and exits non-zero on the first failure.
"""
import json
import os
import sys

import openai
from openai import OpenAI


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:300]}), flush=True)
    if not ok:
        sys.exit(1)


base = os.environ["FLM_BASE_URL"]
key = os.environ["FLM_API_KEY"]
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)

ids = [m.id for m in client.models.list().data]
check("models.list", ids and all(i.startswith("flm://") for i in ids), ids)

for model in filter(None, os.environ.get("FLM_CHAT_MODELS", "").split(",")):
    check(f"listed {model}", model in ids, ids)
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=8,
        temperature=0,
    )
    text = r.choices[0].message.content
    check(f"chat {model}", isinstance(text, str) and r.usage.total_tokens > 0, r)
    parts, finish, usage = [], None, None
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    check(f"stream {model}", finish is not None and usage is not None and len(parts) > 1, (finish, usage, parts))

for model in filter(None, os.environ.get("FLM_EMBED_MODELS", "").split(",")):
    r = client.embeddings.create(model=model, input=["hello world", "goodbye"])
    check(f"embeddings {model}", len(r.data) == 2 and len(r.data[0].embedding) > 0, len(r.data))

try:
    OpenAI(base_url=base, api_key="flm_0000000000000000_" + "A" * 32, max_retries=0).models.list()
    check("bad key rejected", False, "no error")
except openai.AuthenticationError as e:
    check("bad key rejected", e.status_code == 401 and e.body and e.body.get("code") == "invalid_api_key", e.body)

try:
    client.chat.completions.create(model="flm://no-such-engine/x", messages=[{"role": "user", "content": "hi"}])
    check("bad model rejected", False, "no error")
except openai.NotFoundError as e:
    check("bad model rejected", e.status_code == 404 and e.body.get("code") == "engine_not_found", e.body)

broken = os.environ.get("FLM_BROKEN_MODEL")
if broken:
    got = []
    try:
        for chunk in client.chat.completions.create(
            model=broken, messages=[{"role": "user", "content": "tell me a story"}], stream=True
        ):
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
        check("engine gone mid-stream raises", False, "stream ended without an error")
    except openai.APIError as e:
        check("engine gone mid-stream raises", len(got) >= 1, (got, e))

print(json.dumps({"done": True}))
