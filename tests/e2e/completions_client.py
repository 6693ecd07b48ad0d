"""Drives FLM's `POST /v1/completions` with the official `openai` Python SDK.

Environment: FLM_BASE_URL (…/v1), FLM_API_KEY, FLM_COMPLETION_MODEL (a model without
fill-in-the-middle tokens), FLM_FIM_MODEL (one with them), FLM_EMBED_MODEL (an
embeddings-only model), FLM_NO_FIM_ENGINE_MODEL (a model on an engine without
`suffix`), FLM_EMULATED_MODELS (comma-separated models of other engines, each checked
plain and streamed), FLM_OLLAMA_FIM_MODEL (an Ollama model with `insert`). Prints one
JSON line per check and exits non-zero on the first failure.
"""
import json
import os
import sys

import openai
from openai import OpenAI


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:400]}), flush=True)
    if not ok:
        sys.exit(1)


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return e.status_code, (e.body or {}).get("code"), e.body
    return None, None, "no error"


base = os.environ["FLM_BASE_URL"]
key = os.environ["FLM_API_KEY"]
model = os.environ["FLM_COMPLETION_MODEL"]
fim = os.environ["FLM_FIM_MODEL"]
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
check(
    "completion",
    r.object == "text_completion"
    and isinstance(r.choices[0].text, str)
    and r.choices[0].finish_reason in ("length", "stop")
    and r.usage.completion_tokens > 0
    and r.model == model,
    r,
)

r = client.completions.create(model=model, prompt=["one", "two"], max_tokens=3, temperature=0)
check("prompt array", len(r.choices) == 2 and r.usage.prompt_tokens > 0, r)


def stream(**kw):
    texts, finish, usage, models = [], None, None, set()
    for chunk in client.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        models.add(chunk.model)
        if chunk.choices:
            texts.append(chunk.choices[0].text or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    return [t for t in texts if t], finish, usage, models


texts, finish, usage, models = stream(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
check(
    "completion stream",
    len(texts) > 1 and finish is not None and usage is not None and usage.completion_tokens > 0 and models == {model},
    (texts, finish, usage, models),
)

r = client.completions.create(
    model=fim, prompt="def add(a, b):\n    ", suffix="\n    return c\n", max_tokens=6, temperature=0
)
check(
    "fim",
    r.object == "text_completion"
    and isinstance(r.choices[0].text, str)
    and r.choices[0].finish_reason in ("length", "stop")
    and r.usage.prompt_tokens > 0
    and r.usage.completion_tokens > 0
    and r.model == fim,
    r,
)

texts, finish, usage, models = stream(
    model=fim, prompt="def add(a, b):\n    ", suffix="\n    return c\n", max_tokens=6, temperature=0
)
check(
    "fim stream",
    len(texts) > 1 and finish is not None and usage is not None and usage.prompt_tokens > 0 and models == {fim},
    (texts, finish, usage, models),
)

for other in filter(None, os.environ.get("FLM_EMULATED_MODELS", "").split(",")):
    r = client.completions.create(model=other, prompt="Say hello", max_tokens=4)
    check(f"completion {other}", r.choices[0].text and r.usage.completion_tokens > 0 and r.model == other, r)
    texts, finish, usage, models = stream(model=other, prompt="Say hello", max_tokens=4)
    check(
        f"completion stream {other}",
        len(texts) > 1 and finish is not None and usage is not None and models == {other},
        (texts, finish, usage, models),
    )

ollama_fim = os.environ.get("FLM_OLLAMA_FIM_MODEL")
if ollama_fim:
    r = client.completions.create(model=ollama_fim, prompt="def add(a, b):", suffix="return c", max_tokens=4)
    check("fim on Ollama", r.choices[0].text and r.model == ollama_fim, r)
    texts, finish, usage, models = stream(model=ollama_fim, prompt="def add(a, b):", suffix="return c", max_tokens=4)
    check("fim stream on Ollama", len(texts) > 1 and usage is not None, (texts, finish, usage, models))

# Code that looks like attacks is content: never scored by the defence.
r = client.completions.create(
    model=fim,
    prompt="q = \"SELECT * FROM users WHERE id = '1' OR 1=1; --\"\nos.system('cat ../../etc/passwd')\n",
    suffix="\n<script>alert(1)</script> $(rm -rf /) ${jndi:ldap://x}\n",
    max_tokens=3,
)
check("attack-looking code is content", r.choices[0].finish_reason in ("length", "stop"), r)

status, code, body = error_of(lambda: client.completions.create(model=model, prompt="x", suffix="y", max_tokens=2))
check("fim refused without FIM tokens", status == 400 and code == "suffix_not_supported", body)

status, code, body = error_of(
    lambda: client.completions.create(model=os.environ["FLM_NO_FIM_ENGINE_MODEL"], prompt="x", suffix="y")
)
check("fim refused by engine kind", status == 400 and code == "suffix_not_supported", body)

status, code, body = error_of(lambda: client.completions.create(model=os.environ["FLM_EMBED_MODEL"], prompt="x"))
check("embeddings-only model refused", status == 400 and code == "completions_not_supported", body)

chat = error_of(
    lambda: client.chat.completions.create(model="flm://no-such-engine/x", messages=[{"role": "user", "content": "hi"}])
)
comp = error_of(lambda: client.completions.create(model="flm://no-such-engine/x", prompt="hi"))
check("unknown engine as chat", comp[0] == chat[0] == 404 and comp[1] == chat[1] == "engine_not_found", (chat, comp))
chat = error_of(lambda: client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}]))
comp = error_of(lambda: client.completions.create(model="no-such-model", prompt="hi"))
check("unknown model as chat", comp[0] == chat[0] == 404 and comp[1] == chat[1] == "model_not_found", (chat, comp))

status, code, body = error_of(lambda: client.completions.create(model=model, prompt=5))
check("wrong prompt type", status == 400 and code == "invalid_prompt", body)
status, code, body = error_of(lambda: client.completions.create(model=model, prompt="x", suffix=7))
check("wrong suffix type", status == 400 and code == "invalid_suffix", body)

bad = OpenAI(base_url=base, api_key="flm_0000000000000000_" + "A" * 32, max_retries=0)
status, code, body = error_of(lambda: bad.completions.create(model=model, prompt="x"))
check("bad key rejected", status == 401 and code == "invalid_api_key", body)

print(json.dumps({"done": True}), flush=True)
