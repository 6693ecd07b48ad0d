"""Drives a FLM model profile (`profile/<label>` as the model id) with the official
`openai` Python SDK.

Environment: FLM_BASE_URL (…/v1), FLM_API_KEY, FLM_PROFILE (a profile whose
parameters include max_tokens=3), FLM_PHASE (`plain` runs every check; `template`
only reports the prompt size). Prints one JSON line per check, then
`prompt_tokens=<n>` of a fixed request, and exits non-zero on the first failure.
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


client = OpenAI(base_url=os.environ["FLM_BASE_URL"], api_key=os.environ["FLM_API_KEY"],
                max_retries=0, timeout=60)
profile = os.environ["FLM_PROFILE"]
phase = os.environ.get("FLM_PHASE", "plain")
msgs = [{"role": "user", "content": "Tell me a long story about the sea."}]

if phase == "plain":
    ids = [m.id for m in client.models.list().data]
    check("profile listed", profile in ids, ids)

    r = client.chat.completions.create(model=profile, messages=msgs)
    check("profile max_tokens applies", r.usage.completion_tokens <= 3
          and r.choices[0].finish_reason in ("length", "stop"), r)

    r = client.chat.completions.create(model=profile, messages=msgs, max_tokens=6)
    check("client max_tokens wins", 0 < r.usage.completion_tokens <= 6, r)

    chunks = list(client.chat.completions.create(model=profile, messages=msgs, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check("profile streams", len(chunks) > 0 and isinstance(text, str), chunks[-1:])

    r = client.completions.create(model=profile, prompt="Once upon a time")
    check("profile on completions", r.usage.completion_tokens <= 3, r)

    try:
        client.chat.completions.create(model="profile/no-such-profile", messages=msgs)
        check("unknown profile refused", False, "no error")
    except openai.NotFoundError as e:
        check("unknown profile refused", e.status_code == 404 and "no model profile" in str(e), e)

r = client.chat.completions.create(model=profile, messages=msgs)
print(f"prompt_tokens={r.usage.prompt_tokens}", flush=True)
print(json.dumps({"done": True}), flush=True)
