"""What the fake LLM server answers: deterministic OpenAI and Anthropic responses.

Every answer is a function of the request body (and a per-server serial for ids),
so a memoizing layer in front of the server can be checked for hits and misses.
Triggers, looked for in the last user message (or prompt / input):
``[length]``, ``[filter]``, ``[tool]``, ``[json]``, ``[error500]``,
``[stream-error]`` and, for the Responses API, ``[incomplete]``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROUTES", "Reply", "error", "user_text"]

JSON = dict[str, Any]
CREATED = 1_700_000_000  # a fixed timestamp keeps answers byte-for-byte reproducible
STREAM_ERROR = {"error": {"message": "boom", "type": "server_error"}}


@dataclass
class Reply:
    """What an endpoint wants sent: a JSON document, or (``events``) an SSE stream."""

    status: int = 200
    body: Any = None
    events: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _text_of(value: Any) -> str:
    """Flatten strings, content-part lists and message lists into plain text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return " ".join(_text_of(value[k]) for k in ("content", "text") if k in value)
    return ""


def user_text(body: JSON) -> str:
    """Text of the last user message, or the whole prompt/input when it is not a chat."""
    for key in ("messages", "input", "prompt"):
        items = body.get(key)
        if isinstance(items, list) and any(isinstance(m, dict) for m in items):
            users = [m for m in items if isinstance(m, dict) and m.get("role") == "user"]
            return _text_of(users[-1]) if users else ""
        if items is not None:
            return _text_of(items)
    return ""


def _words(text: str) -> int:
    return len(text.split())  # our "tokenizer": good enough for plausible usage numbers


def _usage(body: JSON, completion: int) -> JSON:
    keys = ("system", "instructions", "messages", "input", "prompt")
    prompt = max(1, _words(_text_of([body.get(k) for k in keys])))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _digest(body: JSON) -> str:
    # Streaming flags are transport details: a streamed call gets the same text as a plain one.
    core = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def _pieces(text: str) -> list[str]:
    """Word-sized stream deltas that concatenate back to exactly ``text``."""
    return re.findall(r"\s*\S+", text) or [text]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _json_schema_of(body: JSON) -> JSON | None:
    """The structured-output schema, in the chat, Responses or Anthropic dialect."""
    for outer, inner in (("response_format", "json_schema"), ("text", "format"), ("output_config", "format")):
        spec = (body.get(outer) or {}).get(inner)
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return schema
    return None


def _fake_value(schema: Any, name: str, seed: str, root: JSON) -> Any:
    """A value matching a simple JSON schema: enough for pydantic ``parse()`` round trips."""
    if not isinstance(schema, dict):
        return None
    if isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/"):  # nested models
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _fake_value(target, name, seed, root)
    if schema.get("enum"):
        return schema["enum"][0]
    if options := schema.get("anyOf") or schema.get("oneOf"):  # Optional[X] and unions
        return _fake_value(next((s for s in options if s.get("type") != "null"), {}), name, seed, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        return {k: _fake_value(v, k, seed, root) for k, v in schema.get("properties", {}).items()}
    values: dict[str, Any] = {"string": f"{name} {seed[:6]}", "integer": int(seed[:4], 16) % 100}
    values.update(number=0.9, boolean=True, array=[])
    return values.get(str(kind))


def _content(body: JSON, index: int = 0) -> str:
    """The deterministic answer text (plain, or JSON when structured output is asked for)."""
    tag = hashlib.sha256(f"{_digest(body)}:{index}".encode()).hexdigest()[:8]
    user = user_text(body)
    text = f"Fake answer {tag} about: {' '.join(user.split()[:8]) or 'your request'}"
    if (schema := _json_schema_of(body)) is not None:
        return json.dumps(_fake_value(schema, "value", tag, schema))
    if "[json]" in user or (body.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"answer": text, "confidence": 0.9})
    return text


def _vector(text: str, model: str, dims: int) -> list[float]:
    """A unit-length pseudo-random vector, rounded to float32 so that the ``float`` and
    ``base64`` (little-endian float32) encodings decode to exactly the same numbers."""
    raw = b"".join(hashlib.sha256(f"{model}:{text}:{b}".encode()).digest() for b in range(dims // 8 + 1))
    values = [v / 0xFFFFFFFF * 2 - 1 for v in struct.unpack(f"<{dims}I", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in values))))


def error(status: int, message: str, kind: str, anthropic: bool = False) -> Reply:
    if anthropic:
        return Reply(status, {"type": "error", "error": {"type": kind, "message": message}})
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def _openai_stream_end(body: JSON, events: list[bytes], last: JSON) -> Reply:
    """Shared tail of chat and legacy streams: error trigger, usage chunk, ``[DONE]``."""
    if "[stream-error]" in user_text(body):
        return Reply(events=[*events[:2], _sse(STREAM_ERROR)])
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(last))  # the real API sends usage last, in a chunk without choices
    return Reply(events=[*events, _sse("[DONE]")])


# --------------------------------------------------------------------------- endpoints
# Each endpoint is a pure function (body, serial) -> Reply.


def _chat_completions(body: JSON, serial: int) -> Reply:
    user, tools = user_text(body), body.get("tools") or []
    finish = "length" if "[length]" in user else "content_filter" if "[filter]" in user else "stop"
    choices: list[JSON] = []
    for i in range(int(body.get("n") or 1)):
        message: JSON = {"role": "assistant", "content": _content(body, i), "refusal": None}
        if "[tool]" in user and tools:
            function = {"name": tools[0].get("function", {}).get("name", "tool"), "arguments": "{}"}
            call = {"id": f"call_{serial}_{i}", "type": "function", "function": function}
            message.update(content=None, tool_calls=[call])
            finish = "tool_calls"
        choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
    usage = _usage(body, sum(_words(c["message"]["content"] or "{}") for c in choices))
    head = {"id": f"chatcmpl-{_digest(body)[:12]}-{serial}", "created": CREATED, "model": body.get("model")}
    head["system_fingerprint"] = "fp_fake"
    if not body.get("stream"):
        return Reply(body={**head, "object": "chat.completion", "choices": choices, "usage": usage})

    head["object"] = "chat.completion.chunk"
    if (body.get("stream_options") or {}).get("include_usage"):
        head["usage"] = None  # with include_usage every chunk carries the key

    def chunk(index: int, delta: JSON, finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "choices": [choice]})

    events: list[bytes] = []
    for c in choices:
        i, message = c["index"], c["message"]
        events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
        calls = enumerate(message.get("tool_calls", []))
        events += [chunk(i, {"tool_calls": [{"index": n, **call}]}) for n, call in calls]
        events += [chunk(i, {"content": p}) for p in _pieces(message["content"] or "")]
        events.append(chunk(i, {}, c["finish_reason"]))
    return _openai_stream_end(body, events, {**head, "choices": [], "usage": usage})


def _completions(body: JSON, serial: int) -> Reply:
    """Legacy text completions."""
    finish = "length" if "[length]" in user_text(body) else "stop"
    texts = [_content(body, i) for i in range(int(body.get("n") or 1))]
    head = {"id": f"cmpl-{_digest(body)[:12]}-{serial}", "object": "text_completion", "created": CREATED}
    head["model"] = body.get("model")
    usage = _usage(body, sum(_words(t) for t in texts))

    def choices(*items: tuple[int, str, str | None]) -> JSON:
        listed = [{"index": i, "text": t, "logprobs": None, "finish_reason": f} for i, t, f in items]
        return {**head, "choices": listed}

    if not body.get("stream"):
        return Reply(body={**choices(*((i, t, finish) for i, t in enumerate(texts))), "usage": usage})
    events = [_sse(choices((i, p, None))) for i, t in enumerate(texts) for p in _pieces(t)]
    events += [_sse(choices((i, "", finish))) for i in range(len(texts))]
    return _openai_stream_end(body, events, {**head, "choices": [], "usage": usage})


def _embeddings(body: JSON, serial: int) -> Reply:
    inputs = body.get("input")
    if not isinstance(inputs, list) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]  # a single string, or a single pre-tokenized input
    model, dims = str(body.get("model")), int(body.get("dimensions") or 8)
    data: list[JSON] = []
    for i, item in enumerate(inputs):
        vec: Any = _vector(item if isinstance(item, str) else json.dumps(item), model, dims)
        # The openai SDK asks for base64 unless the caller chose, and decodes it itself.
        if body.get("encoding_format") == "base64":
            vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    tokens = _usage(body, 0)["prompt_tokens"]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return Reply(body={"object": "list", "data": data, "model": model, "usage": usage})


def _responses(body: JSON, serial: int) -> Reply:
    text, incomplete = _content(body), "[incomplete]" in user_text(body)
    status = "queued" if body.get("background") else "incomplete" if incomplete else "completed"
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {"id": f"msg_{serial}", "type": "message", "role": "assistant", "content": [part]}
    item["status"] = "incomplete" if incomplete else "completed"
    counts = _usage(body, _words(text))
    resp: JSON = {
        "id": f"resp_{_digest(body)[:12]}-{serial}",
        "object": "response",
        "created_at": CREATED,
        "completed_at": CREATED if status == "completed" else None,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": [] if status == "queued" else [item],  # a queued job has produced nothing yet
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "metadata": body.get("metadata") or {},
        "usage": None
        if status == "queued"
        else {
            "input_tokens": counts["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": counts["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counts["total_tokens"],
        },
    }
    for echoed in ("model", "instructions", "max_output_tokens", "previous_response_id", "user"):
        resp[echoed] = body.get(echoed)
    if not body.get("stream"):
        return Reply(body=resp)

    # The SDK's stream helper checks the event order and that ids stay stable.
    events: list[bytes] = []
    seq = itertools.count()

    def emit(kind: str, **fields: Any) -> None:
        events.append(_sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind))

    pending = {**resp, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for oi, out in enumerate(resp["output"]):
        added = {**out, "status": "in_progress", "content": []}
        emit("response.output_item.added", output_index=oi, item=added)
        for ci, done in enumerate(out["content"]):
            ids = {"item_id": out["id"], "output_index": oi, "content_index": ci}
            emit("response.content_part.added", **ids, part={**done, "text": ""})
            for piece in _pieces(done["text"]):
                emit("response.output_text.delta", **ids, delta=piece, logprobs=[])
            emit("response.output_text.done", **ids, text=done["text"], logprobs=[])
            emit("response.content_part.done", **ids, part=done)
        emit("response.output_item.done", output_index=oi, item=out)
    emit("response.incomplete" if incomplete else "response.completed", response=resp)
    return Reply(events=events)


def _messages(body: JSON, serial: int) -> Reply:
    """Anthropic Messages, for both the plain and the beta resource."""
    text, user = _content(body), user_text(body)
    message: JSON = {
        "id": f"msg_{_digest(body)[:12]}-{serial}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if "[length]" in user else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": _usage(body, 0)["prompt_tokens"], "output_tokens": _words(text)},
    }
    if not body.get("stream"):
        return Reply(body=message)

    def ev(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, **fields}, event=kind)  # the SDK skips events without a name

    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    events = [
        ev("message_start", message=start),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        ev("ping"),
        *(ev("content_block_delta", index=0, delta={"type": "text_delta", "text": p}) for p in _pieces(text)),
    ]
    if "[stream-error]" in user:
        return Reply(
            events=[*events[:4], ev("error", error={**STREAM_ERROR["error"], "type": "overloaded_error"})]
        )
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(ev("content_block_stop", index=0))
    events.append(ev("message_delta", delta=delta, usage={"output_tokens": _words(text)}))
    return Reply(events=[*events, ev("message_stop")])


ROUTES: dict[str, Callable[[JSON, int], Reply]] = {
    "/v1/chat/completions": _chat_completions,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
    "/v1/messages": _messages,  # the query string (?beta=true) is ignored for routing
}
