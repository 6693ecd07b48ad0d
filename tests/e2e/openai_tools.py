"""Function calling through FLM with the official `openai` SDK (driven by
crates/flm-proxy/tests/tools.rs): chat completions, non-streamed and streamed, a full
round trip with the tool result, then the Responses API on the same model."""
import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["FLM_BASE_URL"], api_key=os.environ["FLM_API_KEY"], max_retries=0)
model = os.environ["FLM_TOOL_MODEL"]
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}]
question = "Please use get_weather for Paris"
messages = [{"role": "user", "content": question}]

# 1. Non-streamed: the model asks for the tool.
r = client.chat.completions.create(model=model, messages=messages, tools=tools)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", choice
assert choice.message.content is None, choice.message
assert len(choice.message.tool_calls) == 1, choice.message
call = choice.message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather", call
assert call.id.startswith("call_"), call
assert json.loads(call.function.arguments) == {"query": question}, call.function.arguments
assert r.usage.prompt_tokens > 0

# 2. Streamed: the same call arrives as delta.tool_calls.
calls = {}
finish = None
usage = None
for ev in client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True,
                                         stream_options={"include_usage": True}):
    if ev.usage:
        usage = ev.usage
    for c in ev.choices:
        for d in c.delta.tool_calls or []:
            e = calls.setdefault(d.index, {"id": None, "type": None, "name": "", "arguments": ""})
            e["id"] = d.id or e["id"]
            e["type"] = d.type or e["type"]
            if d.function:
                e["name"] += d.function.name or ""
                e["arguments"] += d.function.arguments or ""
        if c.finish_reason:
            finish = c.finish_reason
assert finish == "tool_calls", finish
assert list(calls) == [0], calls
assert calls[0]["type"] == "function" and calls[0]["name"] == "get_weather", calls
assert calls[0]["id"].startswith("call_"), calls
assert json.loads(calls[0]["arguments"]) == {"query": question}, calls
assert usage is not None and usage.completion_tokens > 0

# 3. Round trip: the tool result goes back, the model answers in text.
messages.append(choice.message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})})
final = client.chat.completions.create(model=model, messages=messages, tools=tools)
assert final.choices[0].finish_reason == "stop", final
assert final.choices[0].message.content, final
assert not final.choices[0].message.tool_calls, final

# 4. Responses API, bridged to the same engine.
rtools = [{"type": "function", "name": "get_weather", "parameters": tools[0]["function"]["parameters"]}]
resp = client.responses.create(model=model, input=question, tools=rtools)
fc = [o for o in resp.output if o.type == "function_call"]
assert len(fc) == 1 and fc[0].name == "get_weather", resp.output
assert json.loads(fc[0].arguments) == {"query": question}, fc[0].arguments
events = [e.type for e in client.responses.create(model=model, input=question, tools=rtools, stream=True)]
assert "response.function_call_arguments.done" in events, events
after = client.responses.create(model=model, previous_response_id=resp.id, tools=rtools, input=[
    {"type": "function_call_output", "call_id": fc[0].call_id, "output": json.dumps({"temp_c": 18})},
])
assert after.output_text, after

print(json.dumps({"done": True, "call_id": call.id}))
