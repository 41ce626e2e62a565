"""The vLLM OpenAI-compatible API as a model server answers it (simulated replies)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any


def served_model_name(containers: list[dict[str, Any]]) -> str:
    """The name vLLM serves: --served-model-name, else --model, else the positional of `vllm serve`."""
    for c in containers:
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        found = _flag(argv, "--served-model-name") or _flag(argv, "--model")
        if found:
            return found
        if "serve" in argv:
            i = argv.index("serve")
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                return argv[i + 1]
    return "model"


def _flag(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1].split()[0] if argv[i + 1] else None
        if a.startswith(flag + "="):
            return a.split("=", 1)[1] or None
    return None


def error(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def _reply_text(messages: list[dict[str, Any]], model: str) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if "1+1" in text:
        return "1+1 等于 2。把一个单位和另一个单位合在一起, 一共是两个单位。"
    return f"This is a simulated reply from {model}."


def _tokens(text: str) -> int:
    return max(1, len(text) // 2)


def parse_chat_request(body: bytes, model: str) -> tuple[int, dict[str, Any]] | dict[str, Any]:
    """The request as a dict, or (status, error body) as vLLM would answer a bad one."""
    try:
        req = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as err:
        return error(400, f"Invalid JSON body: {err}", "BadRequestError")
    if not isinstance(req, dict) or not isinstance(req.get("messages"), list) or not req["messages"]:
        return error(400, "'messages' is required and must be a non-empty list", "BadRequestError")
    asked = req.get("model")
    if asked is not None and asked != model:
        return error(404, f"The model `{asked}` does not exist.", "NotFoundError")
    return req


def completion(req: dict[str, Any], model: str, answer: str | None = None) -> dict[str, Any]:
    text = reply_text(req["messages"], model, answer)
    prompt = sum(_tokens(str(m.get("content", ""))) for m in req["messages"])
    done = _tokens(text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }],
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt + done, "completion_tokens": done},
    }


def stream(req: dict[str, Any], model: str, answer: str | None = None) -> Iterator[bytes]:
    """Server-sent events of chat.completion.chunk objects, ending with `data: [DONE]`."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    text = reply_text(req["messages"], model, answer)

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""}, None)
    for i in range(0, len(text), 8):
        yield chunk({"content": text[i:i + 8]}, None)
    yield chunk({}, "stop")
    yield b"data: [DONE]\n\n"


def models(model: str, root: str) -> dict[str, Any]:
    return {"object": "list", "data": [{
        "id": model, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": root,
        "parent": None, "max_model_len": 32768,
    }]}


# --- per-revision behaviour (local group data and tests only: a real vLLM ignores these variables) --------------------
LATENCY_ENV, ERROR_RATE_ENV, ANSWER_ENV = "KNFLEET_SIM_LATENCY_MS", "KNFLEET_SIM_ERROR_RATE", "KNFLEET_SIM_ANSWER"


class Behaviour:
    """How a revision's simulated model server answers, from its container's env: extra latency before the first
    token, a share of answers that are HTTP 500 (spread evenly: every 1/rate-th request of the revision, so a test's
    count is exact), and the text every answer carries."""

    def __init__(self, env: list[dict[str, Any]] | None) -> None:
        values = {e.get("name"): e.get("value") for e in env or [] if isinstance(e, dict)}
        self.latency_s = _number(values.get(LATENCY_ENV), 0.0) / 1000.0
        self.error_rate = min(1.0, max(0.0, _number(values.get(ERROR_RATE_ENV), 0.0)))
        self.answer: str | None = values.get(ANSWER_ENV)

    def fails(self, n: int) -> bool:
        """Whether the revision's n-th request (from 1) answers 500."""
        return int(n * self.error_rate) > int((n - 1) * self.error_rate)


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def reply_text(messages: list[dict[str, Any]], model: str, answer: str | None = None) -> str:
    return answer if answer is not None else _reply_text(messages, model)
