"""Batch API requests and results, as pure functions: custom_id, request lines, result parsing.

- A custom_id is deterministic (same work, same id: results can be matched after any crash) and
  opaque (a keyed hash: no student identity, nothing readable).
- The fixed part of the prompt (instructions, rubric, question) comes first and the student's
  answer last, as JSON data in its own message (prompt caching; never instructions).
- Results are joined on custom_id, never by position; both error shapes are read; a model score
  is checked against the schema and clamped to the question's range, and anything doubtful goes
  to human review instead of crashing the run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from string import Template
from typing import Any

import msgspec

from gradeflow.core.config import PROMPTS_DIR
from gradeflow.core.rubric import evidence_found, score_from_decisions  # noqa: F401  (used by callers too)

CUSTOM_ID_PREFIX = "gf1-"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})  # a batch that will not change
BATCH_ENDPOINT = "/v1/chat/completions"
MAX_OUTPUT_TOKENS = 400
GRADE_SCHEMA: dict[str, Any] = {
    "name": "grade",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "description": "points awarded, 0..max_points"},
            "rationale": {"type": "string"},
            "confidence": {"type": "number", "description": "0..1"},
        },
        "required": ["score", "rationale", "confidence"],
        "additionalProperties": False,
    },
}


MAX_EVIDENCE_CHARS = 300


def rubric_items(question: dict) -> list[dict] | None:
    """The question's rubric items [{id, description, points}], or None for a free-text rubric."""
    return question.get("rubric_items") or None


# Models that return no token log-probabilities (reasoning models refuse the parameter): their confidence is
# the self-report. Every other model is asked for them (body `logprobs: true`).
NO_LOGPROB_MODELS = ("o1", "o3", "o4", "gpt-5")


def wants_logprobs(model: str) -> bool:
    """Whether a request to `model` asks for token log-probabilities."""
    return not model.startswith(NO_LOGPROB_MODELS)


def output_cap(question: dict) -> int:
    """The output-token cap of a request: room for one decision with a short quote per rubric item."""
    return MAX_OUTPUT_TOKENS + 60 * len(rubric_items(question) or ())


# The cold-start output estimate (before a question has usage of its own): the reply's JSON skeleton for the
# question's schema, counted exactly, plus an allowance for the free text in it. Holistic: the rationale carries
# the reasoning (RATIONALE_TOKENS); rubric items: the decisions carry it and the rationale only sums up
# (ITEMS_RATIONALE_TOKENS), plus a short evidence quote per item (EVIDENCE_TOKENS: about half the items are met,
# with a quote of about 12 tokens). Measured against the emulator's replies to the sample day's questions
# (holistic 50-88 tokens, four rubric items 99-157) and the real data set (46 tokens per holistic reply).
RATIONALE_TOKENS = 45
ITEMS_RATIONALE_TOKENS = 15
EVIDENCE_TOKENS = 6


def cold_output_tokens(question: dict, model: str = "gpt-4.1-mini") -> int:
    """Output tokens to expect from a reply to this question before any usage is known: from its schema and the
    number of its rubric items (at most the request's output cap)."""
    items = rubric_items(question)
    if items:
        skeleton: dict[str, Any] = {"decisions": [{"id": c["id"], "met": True, "evidence": ""} for c in items],
                                    "rationale": "", "confidence": 0.95}
        allowance = ITEMS_RATIONALE_TOKENS + EVIDENCE_TOKENS * len(items)
    else:
        skeleton = {"score": max(float(question["max_points"]) - 0.5, 0.0), "rationale": "", "confidence": 0.95}
        allowance = RATIONALE_TOKENS
    return min(output_cap(question), count_tokens(json.dumps(skeleton), encoding_for(model)) + allowance)


def grade_schema(question: dict) -> dict[str, Any]:
    """The structured-output schema: one holistic score, or one decision per rubric item with evidence."""
    items = rubric_items(question)
    if not items:
        return GRADE_SCHEMA
    decision = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "enum": [c["id"] for c in items]},
            "met": {"type": "boolean"},
            "evidence": {"type": "string", "description": "a short quote copied exactly from the answer"},
        },
        "required": ["id", "met", "evidence"],
        "additionalProperties": False,
    }
    return {
        "name": "rubric_decisions",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "decisions": {"type": "array", "items": decision},
                "rationale": {"type": "string"},
                "confidence": {"type": "number", "description": "0..1"},
            },
            "required": ["decisions", "rationale", "confidence"],
            "additionalProperties": False,
        },
    }


def custom_id(institution_id: str, exam_day: str, exam_id: str, question_id: str, answer_sha256: str,
              version: int = 1) -> str:
    """The deterministic, opaque id of one unit of model work (a distinct answer to a question).

    The grading version is part of it, so an admin regrade is new work with new ids.
    """
    material = "\x1f".join([institution_id, str(exam_day), exam_id, question_id, answer_sha256, str(version)])
    return CUSTOM_ID_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:40]


@lru_cache(maxsize=8)
def _template(qtype: str) -> Template:
    return Template((PROMPTS_DIR / f"{qtype}.md").read_text())


def system_prompt(question: dict) -> str:
    """Instructions + question + rubric + reference answer for this question type (or its rubric items)."""
    points = float(question["max_points"])
    items = rubric_items(question)
    return _template("criteria" if items else question["qtype"]).substitute(
        qtype=question["qtype"].replace("_", " "),
        question=question.get("prompt") or "",
        rubric=question["rubric"],
        reference_answer=question["reference_answer"],
        max_points=f"{points:g}",
    )


def build_request(cid: str, model: str, question: dict, answer_text: str) -> dict:
    """One JSONL line of a batch input file."""
    return {
        "custom_id": cid,
        "method": "POST",
        "url": BATCH_ENDPOINT,
        "body": {
            "model": model,
            "temperature": 0,
            "max_completion_tokens": output_cap(question),
            "messages": [
                {"role": "system", "content": system_prompt(question)},
                {"role": "user", "content": json.dumps({"student_answer": answer_text}, ensure_ascii=False)},
            ],
            "response_format": {"type": "json_schema", "json_schema": grade_schema(question)},
            **({"logprobs": True} if wants_logprobs(model) else {}),
        },
    }


# ------------------------------------------------------------------------------- exact token counts
# Prompt tokens are counted offline with the model's own BPE (the `bpe-openai` wheel ships o200k_base and
# cl100k_base). A chat request costs, per message, 3 tokens of framing + its role + its content, then 3
# tokens priming the reply; the structured-output schema is counted as its JSON. The emulator counts the
# same way (devstack/batch_emulator.py), so on it the input estimate is exact.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
# Model name prefixes and their encodings (longest prefix wins); unknown models use o200k_base (every
# current model) and say so once in the log.
MODEL_ENCODINGS = {
    "gpt-4o": "o200k_base", "gpt-4.1": "o200k_base", "gpt-4.5": "o200k_base", "gpt-5": "o200k_base",
    "o1": "o200k_base", "o3": "o200k_base", "o4": "o200k_base", "chatgpt-4o": "o200k_base",
    "gpt-4": "cl100k_base", "gpt-3.5": "cl100k_base", "gpt-35": "cl100k_base",
}
DEFAULT_ENCODING = "o200k_base"


def encoding_for(model: str) -> str:
    """The tokenizer encoding of a model name (o200k_base or cl100k_base)."""
    matches = [prefix for prefix in MODEL_ENCODINGS if model.startswith(prefix)]
    return MODEL_ENCODINGS[max(matches, key=len)] if matches else DEFAULT_ENCODING


@lru_cache(maxsize=1)
def _bindings():
    """The Rust extension behind bpe_openai (it carries its own BPE tables), loaded on its own.

    `import bpe_openai._bindings` would first run the package's __init__, which builds Python copies of
    three encodings' BPE tables at import (3-5 s on these machines) that the Rust tokenizer never uses.
    """
    import importlib.machinery
    import importlib.util
    from pathlib import Path

    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("bpe_openai")  # finds the package without executing it
    for folder in package.submodule_search_locations or []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"_bindings{suffix}"
            if path.exists():
                loader = importlib.machinery.ExtensionFileLoader(name, str(path))
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
                loader.exec_module(module)
                sys.modules[name] = module  # a later `from bpe_openai import _bindings` reuses it (one init)
                return module
    from bpe_openai import _bindings as module  # an unusual layout: the ordinary (slower) import

    return module


@lru_cache(maxsize=4)
def _tokenizer(encoding: str):
    return _bindings().tokenizer_for_encoding(encoding)  # the Rust tokenizer behind bpe_openai.get_encoding


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Exact token count of `text` in `encoding` (special tokens are counted as plain text)."""
    return _tokenizer(encoding).count(text) if text else 0


@lru_cache(maxsize=4096)
def message_tokens(role: str, content: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens one chat message costs: framing, role and content (cached: system prompts repeat)."""
    return TOKENS_PER_MESSAGE + count_tokens(role, encoding) + count_tokens(content, encoding)


@lru_cache(maxsize=64)
def _format_tokens(response_format_json: str, encoding: str) -> int:
    return count_tokens(response_format_json, encoding)


def response_format_tokens(body: dict, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens of the structured-output schema (counted as its compact JSON)."""
    fmt = body.get("response_format")
    if not fmt:
        return 0
    return _format_tokens(json.dumps(fmt, separators=(",", ":"), sort_keys=True), encoding)


def prompt_tokens(body: dict, encoding: str | None = None) -> int:
    """Exact input tokens of one chat-completions request body."""
    enc = encoding or encoding_for(str(body.get("model") or ""))
    messages = body.get("messages") or []
    return (sum(message_tokens(m["role"], m["content"], enc) for m in messages) + REPLY_PRIMING_TOKENS
            + response_format_tokens(body, enc))


@dataclass(frozen=True, slots=True)
class Line:
    """One request line, held small until its job's file is written: its exact input tokens, its size in bytes as
    written, and what it is rendered from (the question's fixed parts, shared by every line of the question, and
    the answer's JSON). `render()` is exactly `json.dumps(build_request(...), ensure_ascii=False)` + a newline,
    as UTF-8; `size` is its length."""

    custom_id: str
    tokens: int
    size: int
    parts: tuple[bytes, bytes, bytes]  # the JSON before the custom id, between it and the answer, after the answer
    answer: bytes  # the user message's content as a JSON string, UTF-8

    def render(self) -> bytes:
        head, middle, tail = self.parts
        return b"".join((head, _json_string(self.custom_id), middle, self.answer, tail))


# A JSON string as json.dumps(text, ensure_ascii=False).encode() writes it, byte for byte (the same escapes: \", \\,
# \b \f \n \r \t and \u00XX for the other control characters; every other character as itself, in UTF-8; checked
# for every code point in tests/unit/test_batch.py), about three times faster: a night writes two per request line.
_json_string = msgspec.json.Encoder().encode


class RequestWriter:
    """Request lines and their exact input tokens, fast: the fixed part of each question is built once.

    `request(cid, question, answer_text)` returns the Line; `line(cid, question, answer_text)` returns (JSONL line
    as text, input tokens), the line being exactly `json.dumps(build_request(...))` plus a newline.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.encoding = encoding_for(model)
        self._fixed: dict[tuple, tuple[tuple[bytes, bytes, bytes], int]] = {}
        self._by_row: dict[int, tuple[dict, tuple[tuple[bytes, bytes, bytes], int]]] = {}  # id(row) -> (row, parts)
        self._user_role = message_tokens("user", "", self.encoding)

    def _parts(self, question: dict) -> tuple[tuple[bytes, bytes, bytes], int]:
        seen = self._by_row.get(id(question))  # the same question row again (it is kept here, so its id is its own)
        if seen is not None and seen[0] is question:
            return seen[1]
        parts = self._fixed_parts(question)
        self._by_row[id(question)] = (question, parts)
        return parts

    def _fixed_parts(self, question: dict) -> tuple[tuple[bytes, bytes, bytes], int]:
        key = (question["qtype"], question.get("prompt"), question["rubric"], question["reference_answer"],
               float(question["max_points"]), json.dumps(rubric_items(question)))
        parts = self._fixed.get(key)
        if parts is None:
            sample = build_request("\x00CID\x00", self.model, question, "\x00ANSWER\x00")
            text = json.dumps(sample, ensure_ascii=False)
            head, rest = text.split(json.dumps("\x00CID\x00"), 1)
            user_json = json.dumps(sample["body"]["messages"][1]["content"], ensure_ascii=False)
            middle, tail = rest.split(user_json, 1)
            fixed_tokens = (message_tokens("system", sample["body"]["messages"][0]["content"], self.encoding)
                            + REPLY_PRIMING_TOKENS + response_format_tokens(sample["body"], self.encoding))
            parts = ((head.encode(), middle.encode(), (tail + "\n").encode()), fixed_tokens)
            self._fixed[key] = parts
        return parts

    def request(self, cid: str, question: dict, answer_text: str) -> Line:
        """The line of one request (custom id `cid`, a question's row, the answer's text), not yet rendered."""
        (head, middle, tail), fixed_tokens = self._parts(question)
        # json.dumps({"student_answer": answer_text}, ensure_ascii=False), then that text as a JSON string
        content = '{"student_answer": ' + _json_string(answer_text).decode() + "}"
        answer = _json_string(content)
        size = len(head) + len(_json_string(cid)) + len(middle) + len(answer) + len(tail)
        return Line(cid, fixed_tokens + self._user_role + count_tokens(content, self.encoding), size,
                    (head, middle, tail), answer)

    def line(self, cid: str, question: dict, answer_text: str) -> tuple[str, int]:
        request = self.request(cid, question, answer_text)
        return request.render().decode(), request.tokens


@dataclass(frozen=True)
class LineResult:
    """One result line, judged: a usable grade, or the reason it goes to human review."""

    custom_id: str
    ok: bool
    score: float | None = None
    raw_score: float | None = None
    rationale: str | None = None
    confidence: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    retryable: bool = False
    code: str | None = None  # the error code, e.g. refusal, invalid_json, server_error (None when ok)
    # Rubric items: [{id, met, points, evidence, evidence_found}] and whether every met item's quote is in
    # the answer (None: a free-text rubric, or no answer text to check against).
    decisions: tuple[dict, ...] | None = None
    evidence_ok: bool | None = None
    confidence_source: str | None = None  # logprobs | self_report (None when not ok)


RETRYABLE_CODES = frozenset({"batch_expired", "batch_cancelled", "server_error", "rate_limit_exceeded",
                             "request_timeout", "conflict"})
# A non-200 line with one of these HTTP statuses failed for a passing reason (timeout, conflict, too early,
# rate limit; and every 5xx): sent again in the next wave while it has attempts left, never straight to review.
TRANSIENT_HTTP_STATUSES = {408: "request_timeout", 409: "conflict", 425: "request_timeout",
                           429: "rate_limit_exceeded"}


# ------------------------------------------------------------------------------- reading result lines
# A result line is mostly what judging it does not read: each token of the reply comes with its bytes and its
# top log-probabilities (about nine tenths of a line). `read_line` decodes a line of the usual shape (no
# error, a response with status 200) with msgspec straight into the few fields `parse_line` reads, skipping
# the rest without building Python objects for it, and hands parse_line the same values `json.loads` would;
# any other line, and any line msgspec refuses where `json.loads` might not (NaN, a lone surrogate, a number
# out of range, a token that is not a string and a number...), is read by `json.loads` itself. Either way
# parse_line gives the line the same verdict.


class _Token(msgspec.Struct):
    token: str
    logprob: int | float  # a bool is refused (json.loads' reading then says: no usable log-probabilities)


class _LogProbs(msgspec.Struct):
    content: list[_Token] | None = None


class _Message(msgspec.Struct):
    content: Any = None
    refusal: Any = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: Any = None
    logprobs: _LogProbs | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: Any = None
    completion_tokens: Any = None


class _Body(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None


class _Response(msgspec.Struct):
    status_code: Any = None
    body: _Body | None = None


class _Line(msgspec.Struct):
    custom_id: Any = None
    response: _Response | None = None
    error: Any = None


_LINE = msgspec.json.Decoder(_Line)


@dataclass(frozen=True, slots=True)
class _Spelling:
    """A reply's token log-probabilities as read_line found them: each token's text and log-probability."""

    pieces: list[str]
    values: list[int | float]


def read_line(raw: str | bytes | dict) -> dict:
    """One line of an output or error file (JSON text) as `parse_line` reads it: the same verdict as
    `parse_line(json.loads(raw))`, faster (see above); a line that is not JSON raises json.JSONDecodeError."""
    if isinstance(raw, dict):
        return raw  # already read (a provider that yields no text)
    if isinstance(raw, bytes) and not raw.isascii():
        return json.loads(raw)  # json.loads' own choice of encoding (a BOM, UTF-16...) and its errors
    try:
        line = _LINE.decode(raw)
    except (msgspec.MsgspecError, UnicodeEncodeError):  # (the latter: text holding a lone surrogate itself)
        return json.loads(raw)
    response = line.response
    if line.error or response is None or response.status_code != 200:
        return json.loads(raw)  # an error line (rare): read whole, as it is
    body = response.body
    if body is None:
        return {"custom_id": line.custom_id, "error": line.error, "response": {"status_code": 200, "body": None}}
    usage = body.usage
    choices = body.choices
    if choices:
        first = choices[0]
        message, logprobs = first.message, first.logprobs
        tokens = None if logprobs is None else logprobs.content
        choices = [{"message": None if message is None else {"content": message.content, "refusal": message.refusal},
                    "finish_reason": first.finish_reason,
                    "logprobs": None if tokens is None else _Spelling([t.token for t in tokens],
                                                                      [t.logprob for t in tokens])}]
    return {"custom_id": line.custom_id, "error": line.error, "response": {"status_code": 200, "body": {
        "usage": None if usage is None else {"prompt_tokens": usage.prompt_tokens,
                                             "completion_tokens": usage.completion_tokens},
        "choices": choices}}}


def _error_result(cid: str, code: str, message: str, usage: dict | None = None) -> LineResult:
    usage = usage or {}
    return LineResult(cid, False, error=f"{code}: {message}"[:500], retryable=code in RETRYABLE_CODES, code=code,
                      input_tokens=int(usage.get("prompt_tokens") or 0),
                      output_tokens=int(usage.get("completion_tokens") or 0))


def parse_line(line: dict, max_points: float, items: list[dict] | None = None,
               answer_text: str | None = None) -> LineResult:
    """Judge one output- or error-file line (both error shapes) for a question worth max_points.

    With rubric `items` the reply must decide each item once; the score is computed from the decisions,
    and with `answer_text` every met item's evidence quote is looked up in the answer.
    """
    cid = str(line.get("custom_id"))
    response = line.get("response")
    if line.get("error") and not response:
        err = line["error"] or {}
        return _error_result(cid, str(err.get("code") or "error"), str(err.get("message") or ""))
    if not isinstance(response, dict):
        return _error_result(cid, "malformed_line", "no response and no error")
    body = response.get("body") or {}
    if response.get("status_code") != 200:
        err = body.get("error") or {}
        status = response.get("status_code")
        status = status if isinstance(status, int) else 0
        code = str(err.get("code") or err.get("type") or f"http_{status}")
        if status >= 500 or status in TRANSIENT_HTTP_STATUSES:  # whatever the body calls it: a passing failure
            code = "server_error" if status >= 500 else TRANSIENT_HTTP_STATUSES[status]
        return _error_result(cid, code, f"HTTP {status}: {err.get('message') or ''}")
    return _parse_completion(cid, body, max_points, items, answer_text)


def _parse_completion(cid: str, body: dict, max_points: float, items: list[dict] | None = None,
                      answer_text: str | None = None) -> LineResult:
    usage = body.get("usage") or {}
    choices = body.get("choices") or []
    if not choices:
        return _error_result(cid, "no_choices", "the completion has no choices", usage)
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        return _error_result(cid, "refusal", str(message["refusal"]), usage)
    if choice.get("finish_reason") == "length":
        return _error_result(cid, "truncated", "output cut at the token limit (finish_reason=length)", usage)
    try:
        payload = json.loads(unfence(message.get("content") or ""))
    except json.JSONDecodeError as exc:
        return _error_result(cid, "invalid_json", f"model output is not JSON: {exc.msg}", usage)
    problem = _decisions_problem(payload, items) if items else _schema_problem(payload)
    if problem:
        return _error_result(cid, "schema_mismatch", problem, usage)
    if items:
        confidence, source = _confidence(choice, message.get("content") or "", payload)
        return _items_result(cid, payload, usage, max_points, items, answer_text, confidence, source)
    raw = float(payload["score"])
    score = min(max(raw, 0.0), float(max_points))
    confidence, source = _confidence(choice, message.get("content") or "", payload)
    return LineResult(cid, True, score=score, raw_score=raw, rationale=payload["rationale"][:2000],
                      confidence=confidence, confidence_source=source,
                      input_tokens=int(usage.get("prompt_tokens") or 0),
                      output_tokens=int(usage.get("completion_tokens") or 0))


_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```\s*\Z", re.S)


def unfence(content: str) -> str:
    """A reply wrapped in one Markdown code fence (```json ... ```), as models without structured outputs
    write it, unwrapped; any other text as it is."""
    match = _FENCE.match(content)
    return match.group(1) if match else content


def _schema_problem(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "model output is not a JSON object"
    props = GRADE_SCHEMA["schema"]["properties"]
    if set(payload) != set(props):
        return f"expected exactly the keys {sorted(props)}, got {sorted(payload)}"
    for key in ("score", "confidence"):
        value = payload[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{key} is not a finite number"
    if not isinstance(payload["rationale"], str):
        return "rationale is not a string"
    return None


def _decisions_problem(payload: object, items: list[dict]) -> str | None:
    """Why a rubric-item reply does not fit its schema (each item decided exactly once), else None."""
    if not isinstance(payload, dict):
        return "model output is not a JSON object"
    if set(payload) != {"decisions", "rationale", "confidence"}:
        return f"expected exactly the keys ['confidence', 'decisions', 'rationale'], got {sorted(payload)}"
    value = payload["confidence"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "confidence is not a finite number"
    if not isinstance(payload["rationale"], str):
        return "rationale is not a string"
    decisions = payload["decisions"]
    if not isinstance(decisions, list) or not all(isinstance(d, dict) for d in decisions):
        return "decisions is not a list of objects"
    ids = [d.get("id") for d in decisions]
    expected = [c["id"] for c in items]
    if sorted(map(str, ids)) != sorted(expected) or len(set(ids)) != len(ids):
        return f"decisions must decide each rubric item once: expected {expected}, got {ids}"
    for d in decisions:
        if not isinstance(d.get("met"), bool) or not isinstance(d.get("evidence"), str):
            return f"decision {d.get('id')!r}: met must be true/false and evidence a string"
    return None


def _items_result(cid: str, payload: dict, usage: dict, max_points: float, items: list[dict],
                  answer_text: str | None, confidence: float, source: str) -> LineResult:
    """A rubric-item reply as a grade: the score from the decisions, each met item's evidence checked."""
    by_id = {d["id"]: d for d in payload["decisions"]}
    met = {c["id"]: by_id[c["id"]]["met"] for c in items}
    score, _raw = score_from_decisions(items, met, max_points)
    decisions, evidence_ok = [], None if answer_text is None else True
    for c in items:
        quote = by_id[c["id"]]["evidence"][:MAX_EVIDENCE_CHARS]
        found = None if answer_text is None or not quote.strip() else evidence_found(answer_text, quote)
        if met[c["id"]] and answer_text is not None and not found and (float(c["points"]) > 0 or quote.strip()):
            evidence_ok = False  # a met item's quote (required for points earned) is not in the answer
        decisions.append({"id": c["id"], "met": met[c["id"]], "points": c["points"], "evidence": quote,
                          "evidence_found": found})
    return LineResult(cid, True, score=score, raw_score=score, rationale=payload["rationale"][:2000],
                      confidence=confidence, confidence_source=source,
                      input_tokens=int(usage.get("prompt_tokens") or 0),
                      output_tokens=int(usage.get("completion_tokens") or 0),
                      decisions=tuple(decisions), evidence_ok=evidence_ok)


# The values a grade rests on, in a reply's JSON text: the holistic score, or each rubric item's `met`.
_DECISION_VALUE = re.compile(r'"(score|met)"\s*:\s*(-?[0-9][0-9.eE+-]*|true|false)')


def logprob_confidence(content: str, logprobs: object) -> float | None:
    """Confidence from token log-probabilities: the probability of the least sure decision value.

    Each value's probability is exp(sum of the log-probabilities of the tokens that spell it) (the tokens
    are laid end to end over `content` to find them); None when there are no usable log-probabilities
    (none returned, tokens that do not spell the content, or no decision value found).
    """
    if isinstance(logprobs, _Spelling):  # read by read_line: every token already a (str, number) pair
        return _spelled_confidence(content, logprobs.pieces, logprobs.values)
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not tokens or not isinstance(tokens, list):
        return None
    pieces, values = [], []
    for token in tokens:
        piece, logprob = (token.get("token"), token.get("logprob")) if isinstance(token, dict) else (None, None)
        if not isinstance(piece, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
            return None
        pieces.append(piece)
        values.append(logprob)
    return _spelled_confidence(content, pieces, values)


def _spelled_confidence(content: str, pieces: list[str], values: list[int | float]) -> float | None:
    """logprob_confidence over checked tokens: `pieces` laid end to end must spell `content`; each decision
    value's log-probability is the sum, in token order, of those of the tokens that overlap it."""
    if not pieces:
        return None
    spans = [(m.start(2), m.end(2)) for m in _DECISION_VALUE.finditer(content)]
    if not spans or "".join(pieces) != content:
        return None
    ends = list(accumulate(map(len, pieces)))  # token i spans [ends[i-1], ends[i])
    sums = []
    for a, b in spans:
        total, i = 0.0, bisect_right(ends, a)  # the first token that ends after the value starts
        while i < len(ends) and (ends[i - 1] if i else 0) < b:  # ... up to the last that starts before it ends
            total += float(values[i])
            i += 1
        sums.append(total)
    if not all(math.isfinite(x) for x in sums):
        return None
    return min(max(math.exp(min(sums)), 0.0), 1.0)


def _confidence(choice: dict, content: str, payload: dict) -> tuple[float, str]:
    """(confidence, where it came from): token log-probabilities when the reply has them, else the self-report."""
    from_logprobs = logprob_confidence(content, choice.get("logprobs"))
    if from_logprobs is not None:
        return round(from_logprobs, 6), "logprobs"
    return min(max(float(payload["confidence"]), 0.0), 1.0), "self_report"
