"""Drives FLM's `/v1/responses` with the official `openai` Python SDK.

Environment: FLM_BASE_URL (…/v1), FLM_API_KEY, FLM_OTHER_KEY (a second key of the same
proxy), FLM_BRIDGE_MODEL (the real llama-server: bridged to chat completions),
FLM_TOOL_MODEL (an emulated engine that calls a tool named in the prompt: bridged),
FLM_NATIVE_MODEL (an emulated vLLM: relayed natively). Prints one JSON line per check
(and `{"chain": [ids]}` for the Rust side) and exits non-zero on the first failure.
"""
import json
import os
import sys

import openai
from openai import OpenAI


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:600]}), flush=True)
    if not ok:
        sys.exit(1)


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body or {}
        return e.status_code, body.get("code"), body
    return None, None, "no error"


base = os.environ["FLM_BASE_URL"]
client = OpenAI(base_url=base, api_key=os.environ["FLM_API_KEY"], max_retries=0, timeout=60)
other = OpenAI(base_url=base, api_key=os.environ["FLM_OTHER_KEY"], max_retries=0, timeout=60)
bridged = os.environ["FLM_BRIDGE_MODEL"]
tool_model = os.environ["FLM_TOOL_MODEL"]
native = os.environ["FLM_NATIVE_MODEL"]


def usage_ok(u):
    return u is not None and u.input_tokens > 0 and u.output_tokens > 0 and u.total_tokens == u.input_tokens + u.output_tokens


def stream_events(**kw):
    events = list(client.responses.create(stream=True, **kw))
    return events, [e.type for e in events]


def sequence_ok(events, types):
    seqs = [e.sequence_number for e in events]
    return seqs == list(range(len(events))) and types[:2] == ["response.created", "response.in_progress"]


TEXT_ORDER = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def in_order(types, wanted):
    i = 0
    for t in types:
        if i < len(wanted) and t == wanted[i]:
            i += 1
    return i == len(wanted)


for name, model in (("bridge", bridged), ("native", native)):
    r = client.responses.create(
        model=model, input="Say hello", instructions="You are terse.", max_output_tokens=12, temperature=0
    )
    check(
        f"{name}: create",
        r.object == "response"
        and r.id.startswith("resp")
        and r.status in ("completed", "incomplete")
        and r.model == model
        and isinstance(r.output_text, str)
        and len(r.output_text) > 0
        and r.output[0].type == "message"
        and usage_ok(r.usage),
        r,
    )
    events, types = stream_events(model=model, input="Tell me a story", max_output_tokens=12, temperature=0)
    final = events[-1]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    check(
        f"{name}: stream event sequence",
        sequence_ok(events, types)
        and in_order(types, TEXT_ORDER)
        and types[-1] in ("response.completed", "response.incomplete")
        and types.count("response.output_text.delta") >= 1
        and final.response.output_text == deltas
        and final.response.model == model
        and usage_ok(final.response.usage),
        types,
    )
    # A follow-up turn, then a third one: the whole chain reaches the engine.
    r2 = client.responses.create(model=model, input="And again", previous_response_id=r.id, max_output_tokens=12)
    check(f"{name}: follow-up", r2.previous_response_id == r.id and r2.status in ("completed", "incomplete"), r2)
    streamed = stream_events(model=model, input="Once more", previous_response_id=r2.id, max_output_tokens=12)[0][-1]
    check(f"{name}: streamed follow-up", streamed.response.previous_response_id == r2.id, streamed.type)
    got = client.responses.retrieve(r2.id)
    check(f"{name}: retrieve", got.id == r2.id and got.output_text == r2.output_text and got.model == model, got)
    got = client.responses.retrieve(streamed.response.id)
    check(f"{name}: retrieve a streamed one", got.id == streamed.response.id and got.status == streamed.response.status, got)
    print(json.dumps({"chain": name, "ids": [r.id, r2.id, streamed.response.id]}), flush=True)

# Tools through the bridge: a deterministic call, its output sent back as the next turn.
tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}]
r = client.responses.create(model=tool_model, input="use get_weather for Tokyo", tools=tools, tool_choice="auto")
call = r.output[-1]
check(
    "tool call",
    call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments)["query"] and call.call_id,
    r,
)
r2 = client.responses.create(
    model=tool_model,
    previous_response_id=r.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
    tools=tools,
)
check("tool output turn", r2.status == "completed" and r2.output[0].type == "message" and r2.output_text, r2)
events, types = stream_events(model=tool_model, input="use get_weather for Paris", tools=tools)
done = [e for e in events if e.type == "response.function_call_arguments.done"]
check(
    "streamed tool call",
    sequence_ok(events, types)
    and in_order(types, ["response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done", "response.completed"])
    and len(done) == 1
    and json.loads(done[0].arguments)["query"].endswith("Paris")
    and events[-1].response.output[-1].type == "function_call",
    types,
)
r = client.responses.create(
    model=tool_model,
    input=[{"role": "user", "content": [{"type": "input_text", "text": "give me JSON"}]}],
    text={"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
)
check("text.format accepted", r.status == "completed", r)
print(json.dumps({"format_response": r.id}), flush=True)

# Bad paths.
status, code, body = error_of(lambda: client.responses.create(model=bridged, input=123))
check("input of the wrong shape", status == 400 and code == "invalid_input", body)
status, code, body = error_of(lambda: client.responses.create(model=bridged, input=[{"type": "item_reference", "id": "x"}]))
check("unsupported input item", status == 400 and code == "invalid_input", body)
status, code, body = error_of(lambda: client.responses.create(model=bridged, input="hi", tools=[{"type": "web_search"}]))
check("hosted tool", status == 400 and code == "unsupported_tool", body)
status, code, body = error_of(lambda: client.responses.create(model=bridged, input="hi", previous_response_id="resp_does_not_exist"))
check("unknown previous_response_id", status == 400 and code == "previous_response_not_found", body)
status, code, body = error_of(lambda: client.responses.retrieve("resp_does_not_exist"))
check("unknown id", status == 404 and code == "response_not_found", body)
mine = client.responses.create(model=native, input="private", max_output_tokens=4)
status, code, body = error_of(lambda: other.responses.retrieve(mine.id))
check("another key's response is not found", status == 404 and code == "response_not_found" and mine.id not in json.dumps(body).replace(f"`{mine.id}`", ""), body)
status, code, body = error_of(lambda: other.responses.create(model=native, input="x", previous_response_id=mine.id))
check("another key's previous_response_id", status == 400 and code == "previous_response_not_found", body)
unstored = client.responses.create(model=bridged, input="hi", store=False, max_output_tokens=4)
status, code, body = error_of(lambda: client.responses.retrieve(unstored.id))
check("store false is not kept", status == 404 and code == "response_not_found", body)
status, code, body = error_of(lambda: client.responses.create(model=bridged, input="hi", previous_response_id=unstored.id))
check("store false cannot be continued", status == 400 and code == "previous_response_not_found", body)
deleted = client.responses.delete(mine.id)
status, code, body = error_of(lambda: client.responses.retrieve(mine.id))
check("delete", status == 404 and code == "response_not_found", body)
status, code, body = error_of(lambda: client.responses.create(model="flm://nowhere/x", input="hi"))
check("unknown engine", status == 404, body)

print(json.dumps({"done": True}), flush=True)
