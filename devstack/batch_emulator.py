"""A local emulator of the OpenAI Files and Batches endpoints, for the dev stack and the tests.

The official `openai` SDK works against it unchanged; only `base_url` differs:

    OpenAI(api_key="sk-emulator", base_url="http://127.0.0.1:8765/v1")

Endpoints: POST/GET/DELETE /v1/files, GET /v1/files/{id}/content, POST/GET /v1/batches,
GET /v1/batches/{id}, POST /v1/batches/{id}/cancel, and POST /v1/chat/completions (the synchronous endpoint
an OpenAI-compatible server such as vLLM serves, graded the same way as a batch line; the chat knobs
`chat_rate_limit_next`, `chat_server_error_next`, `chat_malformed_next` answer the next N requests with a
429, a 500 or a 200 whose JSON is cut, and `chat_latency_ms` makes each request take that long).
A batch's status is computed from the wall time
elapsed since it was created (validating -> in_progress -> finalizing -> completed), lazily on each
read. Each request is "graded" deterministically by concept coverage of the reference answer found
in the system prompt; the student's text is only ever counted as words, never followed.

Fault knobs reproduce what real batches do (failed validation, enqueued-token cap, expiry, 500 lines,
cut JSON, refusals, out-of-range scores, all lines failing); set them with POST /_emulator/faults,
read them with GET /_emulator/faults, clear everything with POST /_emulator/reset, and count calls
with GET /_emulator/stats. Faults are snapshotted into each batch when it is created.

    python -m devstack.batch_emulator --host 127.0.0.1 --port 8765 [--timing-scale 1.0] [--faults JSON]

This is a development tool: it imports nothing from `gradeflow`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import re
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

log = logging.getLogger("devstack.batch_emulator")

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
WINDOW_SECONDS = 24 * 3600
FILE_TTL_SECONDS = 30 * 24 * 3600
MAX_LINES = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_TIMING = {"validating": 0.3, "in_progress": 1.0, "finalizing": 0.3}
PHASES = ("validating", "in_progress", "finalizing", "cancelling")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
LINE_FAULTS = ("error", "malformed", "out_of_range", "refusal")
FILE_PURPOSES = frozenset({
    "assistants", "batch", "fine-tune", "vision", "user_data", "evals",
})
CACHE_MIN_TOKENS = 1024
_STOPWORDS_TEXT = """
    about above after again against also among another because been before being below between both
    could does doing down during each either every from further have having here hers herself himself
    into itself just many more most much must neither other ought ours ourselves over same shall should
    since some such than that their theirs them themselves then there therefore these they this those
    through thus under until upon very were what when where whether which while whom whose will with
    within without would your yours yourself
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


class ApiError(Exception):
    """An error returned in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        """The JSON response the real API would send for this error."""
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


# ----------------------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """Failure knobs; a copy is snapshotted into every batch when it is created."""

    timing: dict[str, float] = field(default_factory=dict)
    fail_validation: bool = False
    token_limit: int | None = None
    token_limit_scope: str = "batch"
    enqueued_token_cap: int | None = None  # the organisation's cap, over every live batch of the model
    max_requests_per_file: int | None = None  # default MAX_LINES (50,000)
    max_file_bytes: int | None = None  # default MAX_FILE_BYTES (200 MB)
    expire_after_fraction: float | None = None
    error_line_every: int = 0
    malformed_json_every: int = 0
    out_of_range_every: int = 0
    refusal_every: int = 0
    obey_injection: bool = False  # an obeying model: instructions inside an answer win (full marks, confidence 0.99)
    # "calibrated": unsure only where its score sits near a rounding boundary (a human could round the other
    # way); "coverage": the older 0.55 + 0.4 * |2 * covered share - 1| (unsure of every partial answer)
    confidence_model: str = "calibrated"
    all_fail: bool = False
    custom_id_faults: dict[str, str] = field(default_factory=dict)
    # POST /v1/chat/completions only: the next N requests get a 429 / a 500 / a cut JSON body (counted down).
    chat_rate_limit_next: int = 0
    chat_server_error_next: int = 0
    chat_malformed_next: int = 0
    chat_latency_ms: int = 0

    def merged(self, update: dict[str, Any]) -> Faults:
        """A new Faults with `update` applied over this one (timing is merged key by key)."""
        if not isinstance(update, dict):
            raise ApiError(400, "faults must be a JSON object", param="faults")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(update) - known)
        if unknown:
            raise ApiError(400, f"unknown fault knob(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = asdict(self)
        for key, value in update.items():
            values[key] = _check_knob(key, value, values[key])
        return Faults(**values)


def _check_knob(key: str, value: Any, current: Any) -> Any:
    """Validate one fault knob and return the value to store."""
    if key == "timing":
        return _check_timing(value, current)
    if key == "custom_id_faults":
        return _check_custom_id_faults(value)
    if key in ("fail_validation", "all_fail", "obey_injection"):
        return _require(bool(value), isinstance(value, bool), key, "a boolean")
    if key == "confidence_model":
        return _require(value, value in ("calibrated", "coverage"), key, '"calibrated" or "coverage"')
    if key == "token_limit_scope":
        return _require(value, value in ("batch", "enqueued"), key, '"batch" or "enqueued"')
    if value is None:
        return 0 if key.endswith(("_every", "_next", "_ms")) else None
    if key == "expire_after_fraction":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        return _require(float(value) if ok else value, ok, key, "a number in [0, 1] or null")
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return _require(value, ok, key, "a non-negative integer or null")


def _require(value: Any, ok: bool, key: str, what: str) -> Any:
    """Return value when ok, else raise a 400 naming the knob."""
    if not ok:
        raise ApiError(400, f"fault knob {key!r} must be {what}", param=key)
    return value


def _check_timing(value: Any, current: dict[str, float]) -> dict[str, float]:
    """Validate a timing update ({phase: seconds}) and merge it over the current one."""
    if value is None:
        return {}
    _require(value, isinstance(value, dict), "timing", "an object of phase -> seconds")
    for phase, seconds in value.items():
        _require(seconds, phase in PHASES, "timing", f"keyed by {', '.join(PHASES)}")
        ok = isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0
        _require(seconds, ok, "timing", "non-negative numbers of seconds")
    return {**current, **{k: float(v) for k, v in value.items()}}


def _check_custom_id_faults(value: Any) -> dict[str, str]:
    """Validate {custom_id: fault kind}."""
    if value is None:
        return {}
    _require(value, isinstance(value, dict), "custom_id_faults", "an object of custom_id -> fault")
    for kind in value.values():
        _require(kind, kind in LINE_FAULTS, "custom_id_faults", f"valued in {', '.join(LINE_FAULTS)}")
    return dict(value)


def resolve_timing(faults: Faults, scale: float) -> dict[str, float]:
    """Seconds per phase: the defaults times the timing scale, overridden by the `timing` knob."""
    timing = {phase: seconds * scale for phase, seconds in DEFAULT_TIMING.items()}
    timing.update(faults.timing)
    timing.setdefault("cancelling", timing["finalizing"])
    return timing


def line_fault(faults: Faults, custom_id: str, rank: int) -> str | None:
    """The fault for one line; rank is its 1-based position among the batch's sorted custom_ids."""
    if custom_id in faults.custom_id_faults:
        return faults.custom_id_faults[custom_id]
    if faults.all_fail:
        return "error"
    for kind, every in (("error", faults.error_line_every), ("malformed", faults.malformed_json_every),
                        ("refusal", faults.refusal_every), ("out_of_range", faults.out_of_range_every)):
        if every and rank % every == 0:
            return kind
    return None


# ---------------------------------------------------------------------------------------- grading


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts with "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tag(text: str, name: str) -> str | None:
    """The content of the last <name>...</name> in text, or None."""
    found = re.findall(rf"<{name}>(.*?)</{name}>", text, flags=re.DOTALL | re.IGNORECASE)
    return found[-1].strip() if found else None


def parse_grading_request(body: dict) -> dict:
    """Reference answer and max points from system/developer messages; the answer from the last user one."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    instructions = "\n".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    raw_points = _tag(instructions, "max_points")
    try:
        max_points = float(raw_points) if raw_points is not None else 1.0
    except ValueError:
        max_points = 1.0
    return {"reference": _tag(instructions, "reference_answer") or "", "max_points": max_points,
            "answer": _student_answer(users[-1] if users else "")}


def _student_answer(text: str) -> str:
    """The student answer: the "student_answer" field of a JSON user message, else the raw text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "student_answer" in data:
        return str(data["student_answer"] or "")
    return text


def _stem(word: str) -> str:
    """A light stemmer so that produce/produces/produced/producing match."""
    if word.endswith("ies") and len(word) > 5:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") or word


def concepts(reference: str) -> list[str]:
    """Distinct lower-cased content words of the reference (len >= 4, no stopwords; acronyms like ATP kept)."""
    seen: dict[str, None] = {}
    for token in re.findall(r"[^\W_]+", reference):
        word = token.lower()
        acronym = len(token) >= 2 and token.isupper() and token.isalpha()
        if acronym or (len(word) >= 4 and word not in STOPWORDS):
            seen.setdefault(word, None)
    return list(seen)


def _round_half(value: float) -> float:
    """Round to the nearest 0.5, halves up."""
    return math.floor(value * 2 + 0.5) / 2


def calibrated(clarity: float) -> float:
    """Confidence from how clear a decision is (0: on the boundary, 1: far from it): 0.92 .. 0.99."""
    return round(0.92 + 0.07 * math.sqrt(min(max(clarity, 0.0), 1.0)), 3)


def grade(reference: str, answer: str, max_points: float, model: str = "calibrated") -> dict:
    """Score = max_points * covered / total concepts, to the nearest 0.5, with rationale and confidence."""
    wanted = concepts(reference)
    said = {_stem(w.lower()) for w in re.findall(r"[^\W_]+", answer)}
    covered = [c for c in wanted if _stem(c) in said]
    missing = [c for c in wanted if c not in covered]
    ratio = len(covered) / len(wanted) if wanted else 0.0
    score = min(max_points, _round_half(max_points * ratio))
    if model == "coverage":
        confidence = 0.95 if not answer.strip() else round(0.55 + 0.4 * abs(2 * ratio - 1), 2)
    else:  # the exact score's position within its half-point step: at a step clear, halfway a coin toss
        position = (max_points * ratio * 2) % 1
        confidence = calibrated(abs(position - 0.5) * 2)
    rationale = (f"Covered {len(covered)} of {len(wanted)} reference concepts: {', '.join(covered) or 'none'}. "
                 f"Missing: {', '.join(missing) or 'none'}.")
    return {"score": score, "rationale": rationale, "confidence": confidence}


ALIASES = {"points": "score", "grade": "score", "reasoning": "rationale", "explanation": "rationale",
           "feedback": "rationale", "justification": "rationale"}


def conform(schema: dict, values: dict) -> Any:
    """An instance of a JSON schema: object properties filled from values (or aliases), else type defaults."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: _property(name, sub, values) for name, sub in (schema.get("properties") or {}).items()}
    return _default(kind)


def _property(name: str, schema: dict, values: dict) -> Any:
    """One property: the graded value of that name (cast to the schema's type), else a default."""
    key = name if name in values else ALIASES.get(name)
    if key is None or not isinstance(schema, dict):
        return conform(schema if isinstance(schema, dict) else {}, values)
    value, kind = values[key], schema.get("type")
    if kind == "integer":
        return int(round(float(value)))
    if kind == "string":
        return str(value)
    return value


def _default(kind: str | None) -> Any:
    """A default value of a JSON schema type."""
    if kind == "array":
        return []
    return {"string": "", "number": 0, "integer": 0, "boolean": False, "null": None}.get(kind or "")


# -------------------------------------------------------------------------------------- responses


def _sha(*parts: str) -> str:
    """A hex digest of the parts, for deterministic ids and order."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


# Token counts like the real API's: the model's BPE (bpe-openai, offline), 3 tokens of framing per
# message plus its role and content, 3 tokens priming the reply, and the structured-output schema as its
# compact JSON. The same rule as GradeFlow's estimate, written out here (this module imports nothing
# from gradeflow).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


def _encoding(model: str) -> str:
    return "cl100k_base" if model.startswith(("gpt-4-", "gpt-3.5", "gpt-35")) or model == "gpt-4" else "o200k_base"


@functools.lru_cache(maxsize=4)
def _tokenizer(encoding: str):
    from bpe_openai import _bindings

    return _bindings.tokenizer_for_encoding(encoding)


@functools.lru_cache(maxsize=8192)
def _count(text: str, encoding: str = "o200k_base") -> int:
    return _tokenizer(encoding).count(text) if text else 0


def _tokens(text: str, encoding: str = "o200k_base") -> int:
    """Tokens of a text (at least 1)."""
    return max(1, _count(text, encoding))


def prompt_tokens(body: dict) -> tuple[int, int]:
    """(prompt tokens, tokens of the cacheable prefix: every message before the last one)."""
    encoding = _encoding(str(body.get("model") or ""))
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    sizes = [TOKENS_PER_MESSAGE + _count(str(m.get("role") or ""), encoding) + _count(_text(m.get("content")), encoding)
             for m in messages]
    fmt = body.get("response_format")
    schema = _count(json.dumps(fmt, separators=(",", ":"), sort_keys=True), encoding) if fmt else 0
    return max(1, sum(sizes) + REPLY_PRIMING_TOKENS + schema), sum(sizes[:-1])


RUBRIC_ITEM_RE = re.compile(r"^\s*([A-Za-z0-9._-]{1,64}) \(([+-][0-9.]+)\): (.+)$")
INJECTION_RE = re.compile(r"ignore (all |the |any |previous |prior )*(instructions|rubric)|full marks|"
                          r"<\s*/?\s*(system|assistant)|\"score\"\s*:|as the grader", re.IGNORECASE)


def rubric_items(instructions: str) -> list[dict]:
    """The rubric items of a request, from its <rubric_items> block (`id (+p): description` a line)."""
    block = _tag(instructions, "rubric_items") or ""
    found = (RUBRIC_ITEM_RE.match(line) for line in block.splitlines())
    return [{"id": m.group(1), "points": float(m.group(2)), "description": m.group(3)} for m in found if m]


def _evidence(answer: str, words: list[str]) -> str:
    """A short quote copied from the answer: the clause holding the first of `words` (stemmed)."""
    for clause in re.split(r"(?<=[.;!?])\s+|,\s+", answer):
        stems = {_stem(w.lower()) for w in re.findall(r"[^\W_]+", clause)}
        if any(_stem(w) in stems for w in words):
            return clause.strip()[:120]
    return ""


def decide(items: list[dict], answer: str) -> dict:
    """Per rubric item: met when the answer covers at least a third of the item's content words, with a quote."""
    said = {_stem(w.lower()) for w in re.findall(r"[^\W_]+", answer)}
    decisions, margins = [], []
    for item in items:
        wanted = concepts(item["description"])
        covered = [c for c in wanted if _stem(c) in said]
        ratio = len(covered) / len(wanted) if wanted else 0.0
        met = ratio >= 1 / 3
        # how clear the decision is: 1 with every word or none covered, 0 right at the threshold
        margins.append((ratio - 1 / 3) * 1.5 if met else (1 / 3 - ratio) * 3)
        decisions.append({"id": item["id"], "met": met, "evidence": _evidence(answer, covered) if met else "",
                          "p": calibrated(margins[-1])})
    confidence = min((d["p"] for d in decisions), default=0.99)
    met_ids = [d["id"] for d in decisions if d["met"]]
    return {"decisions": decisions, "confidence": confidence,
            "rationale": f"Met {len(met_ids)} of {len(items)} rubric items: {', '.join(met_ids) or 'none'}."}


def _obey(values: dict, items: list[dict], max_points: float) -> dict:
    """What an obeying model does with an answer that tells it to: full marks, confidence 0.99."""
    values = dict(values, score=max_points, confidence=0.99, rationale="Full marks, as the answer instructs.")
    if items:  # every earning item met, no deduction; the quotes are the rubric's words, not the answer's
        values["decisions"] = [{"id": c["id"], "met": c["points"] > 0, "evidence": c["description"][:80], "p": 0.99}
                               for c in items]
    return values


def _content(body: dict, fault: str | None, faults: Faults | None = None) -> tuple[str, dict]:
    """The assistant's content for a grading request, shaped by its response_format, and the graded values."""
    request = parse_grading_request(body)
    values = grade(request["reference"], request["answer"], request["max_points"],
                   faults.confidence_model if faults is not None else "calibrated")
    response_format = body.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    schema = ((response_format.get("json_schema") or {}).get("schema") or {}) if kind == "json_schema" else {}
    items: list[dict] = []
    if "decisions" in (schema.get("properties") or {}):
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        items = rubric_items("\n".join(_text(m.get("content")) for m in messages
                                       if m.get("role") in ("system", "developer")))
        values.update(decide(items, request["answer"]))
    if faults is not None and faults.obey_injection and INJECTION_RE.search(request["answer"]):
        values = _obey(values, items, request["max_points"])
    if fault == "out_of_range":
        values["score"] = request["max_points"] * 3
    if kind == "json_schema":
        if items:
            decisions = [{k: d[k] for k in ("id", "met", "evidence")} for d in values["decisions"]]
            return json.dumps({"decisions": decisions, "rationale": values["rationale"],
                               "confidence": values["confidence"]}), values
        return json.dumps(conform(schema, values)), values
    if kind == "json_object":
        return json.dumps(values), values
    max_points = request["max_points"]
    return f"Score: {values['score']:g}/{max_points:g}. {values['rationale']}", values


TOKEN_RE = re.compile(r'\s+|[{}\[\]:,]|"|[^\s{}\[\]:,"]+')
VALUE_RE = re.compile(r'"(score|met)"\s*:\s*(-?[0-9.eE+-]+|true|false)')


def token_logprobs(content: str, values: dict) -> list[dict]:
    """`choices[0].logprobs.content` for a reply: one entry per piece of the text (words, punctuation,
    whitespace), the pieces of its score or of each `met` carrying the log of the model's probability for
    that value (its calibrated confidence), every other piece near certain."""
    chances = [d.get("p", values["confidence"]) for d in values.get("decisions") or []] or [values["confidence"]]
    spans = [(m.start(2), m.end(2)) for m in VALUE_RE.finditer(content)]
    out, position = [], 0
    for piece in TOKEN_RE.findall(content):
        start, position = position, position + len(piece)
        index = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
        if index is None:
            logprob = math.log(0.99999)
        else:  # the value's first piece carries its probability, the rest of it is certain
            logprob = math.log(chances[min(index, len(chances) - 1)]) if start == spans[index][0] else 0.0
        out.append({"token": piece, "logprob": logprob, "bytes": list(piece.encode()),
                    "top_logprobs": [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]})
    return out


def chat_completion(body: dict, seed: str, fault: str | None, created: int, cached: int,
                    faults: Faults | None = None) -> dict:
    """A chat.completion object answering one request body."""
    content, values = _content(body, fault, faults)
    finish, refusal = "stop", None
    logprobs = {"content": token_logprobs(content, values), "refusal": None} if body.get("logprobs") is True else None
    if fault == "malformed":
        content, finish = content[: max(1, len(content) // 2)], "length"
    completion = _tokens(content)
    if fault == "malformed":
        completion = int(body.get("max_completion_tokens") or body.get("max_tokens") or completion)
    if fault == "refusal":
        content, refusal, completion = None, "I'm sorry, but I can't help with grading this answer.", 12
        logprobs = None
    prompt, _ = prompt_tokens(body)
    message = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
    return {
        "id": f"chatcmpl-{seed[:29]}", "object": "chat.completion", "created": created,
        "model": str(body.get("model") or "gpt-4.1-mini"),
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default", "system_fingerprint": "fp_emulator",
    }


def server_error_body() -> dict:
    """The body of a non-200 (500) line."""
    return {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                      "type": "server_error", "param": None, "code": "server_error"}}


UNRUN_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


@dataclass
class LineResult:
    """One request's outcome, computed when the batch is created and revealed as the batch progresses."""

    custom_id: str
    line_id: str
    ok: bool
    record: dict
    usage: dict

    def unrun(self, code: str) -> dict:
        """The error-file line for a request that was never run (expired or cancelled)."""
        return {"id": self.line_id, "custom_id": self.custom_id, "response": None,
                "error": {"code": code, "message": UNRUN_MESSAGES[code]}}


def processing_order(lines: list[dict]) -> list[dict]:
    """Input lines in the order the emulator "runs" them: by sha256(custom_id); never the input order."""
    ordered = sorted(lines, key=lambda line: _sha(line["custom_id"]))
    if len(ordered) > 1 and ordered == lines:
        ordered.reverse()
    return ordered


def run_lines(batch_id: str, lines: list[dict], faults: Faults, created: int) -> list[LineResult]:
    """Compute every line's result, in processing order."""
    ranks = {cid: i + 1 for i, cid in enumerate(sorted(line["custom_id"] for line in lines))}
    seen_prefixes: set[str] = set()
    results = []
    for line in processing_order(lines):
        custom_id, body = line["custom_id"], line["body"]
        seed = _sha(batch_id, custom_id)
        fault = line_fault(faults, custom_id, ranks[custom_id])
        cached = _cached_tokens(body, seen_prefixes)
        results.append(_line_result(custom_id, seed, body, fault, created, cached, faults))
    return results


def _cached_tokens(body: dict, seen: set[str]) -> int:
    """Automatic prompt caching: a repeated prefix of a prompt of 1024+ tokens is cached in 128-token steps."""
    prompt, prefix = prompt_tokens(body)
    key = _sha(json.dumps((body.get("messages") or [])[:-1], sort_keys=True, default=str))
    hit = key in seen
    seen.add(key)
    return (prefix // 128) * 128 if hit and prompt >= CACHE_MIN_TOKENS else 0


def _line_result(custom_id: str, seed: str, body: dict, fault: str | None, created: int, cached: int,
                 faults: Faults | None = None) -> LineResult:
    """The output- or error-file line for one request."""
    line_id, request_id = f"batch_req_{seed[:32]}", f"req_{seed[32:64]}"
    if fault == "error":
        response = {"status_code": 500, "request_id": request_id, "body": server_error_body()}
        record = {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
        return LineResult(custom_id, line_id, False, record, _usage())
    completion = chat_completion(body, seed, fault, created, cached, faults)
    response = {"status_code": 200, "request_id": request_id, "body": completion}
    record = {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
    usage = completion["usage"]
    return LineResult(custom_id, line_id, True, record,
                      _usage(usage["prompt_tokens"], usage["completion_tokens"], cached))


def _usage(input_tokens: int = 0, output_tokens: int = 0, cached: int = 0) -> dict:
    """A batch `usage` object."""
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def _sum_usage(items: list[dict]) -> dict:
    """The sum of several `usage` objects."""
    return _usage(sum(u["input_tokens"] for u in items), sum(u["output_tokens"] for u in items),
                  sum(u["input_tokens_details"]["cached_tokens"] for u in items))


# ------------------------------------------------------------------------------------ input files


def validate_batch_file(data: bytes, max_lines: int = MAX_LINES, max_bytes: int = MAX_FILE_BYTES) -> list[dict]:
    """Parse a batch input JSONL file, or raise a 400 naming the first bad line."""
    if len(data) > max_bytes:
        raise ApiError(400, f"Batch input files can be up to {max_bytes:,} bytes; this one has {len(data):,}.",
                       param="file", code="file_too_large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "The file must be UTF-8 encoded JSONL.", param="file", code="invalid_file") from exc
    lines, seen = [], set()
    for number, raw in enumerate(text.split("\n"), start=1):  # at "\n" only: JSON allows U+2028 raw in a string
        if raw.strip():
            lines.append(_validate_line(raw, number, seen))
    if not lines:
        raise ApiError(400, "The batch input file is empty.", param="file", code="empty_file")
    if len(lines) > max_lines:
        raise ApiError(400, f"A batch can hold at most {max_lines} requests; this file has {len(lines)}.",
                       param="file", code="too_many_tasks")
    return lines


def _validate_line(raw: str, number: int, seen: set[str]) -> dict:
    """One JSONL line: custom_id (unique), method POST, url /v1/chat/completions, body object."""
    def bad(code: str, message: str) -> ApiError:
        return ApiError(400, f"Line {number}: {message}", param="file", code=code)

    try:
        line = json.loads(raw)
    except ValueError as exc:
        raise bad("invalid_json_line", "this line is not parseable as valid JSON.") from exc
    if not isinstance(line, dict):
        raise bad("invalid_json_line", "each line must be a JSON object.")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise bad("missing_custom_id", "custom_id must be a non-empty string.")
    if custom_id in seen:
        raise bad("duplicate_custom_id", f"duplicate custom_id {custom_id!r}; custom_id must be unique.")
    if line.get("method") != "POST":
        raise bad("invalid_method", "method must be POST.")
    if line.get("url") != ENDPOINT:
        raise bad("url_mismatch", f"url must be {ENDPOINT}.")
    if not isinstance(line.get("body"), dict):
        raise bad("invalid_body", "body must be a JSON object.")
    seen.add(custom_id)
    return line


# ------------------------------------------------------------------------------------------ state


@dataclass
class StoredFile:
    """A file held in memory."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    lines: list[dict] | None = None

    def view(self) -> dict:
        """The FileObject."""
        expires = self.created_at + FILE_TTL_SECONDS if self.purpose.startswith("batch") else None
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": expires, "status_details": None}


@dataclass
class BatchRecord:
    """A batch: its request, its fault snapshot, its precomputed line results and its schedule."""

    id: str
    input_file_id: str
    endpoint: str
    metadata: dict | None
    model: str | None
    created: float
    timing: dict[str, float]
    faults: Faults
    results: list[LineResult]
    failure: list[dict] | None = None
    cancel_requested: float | None = None
    cancel_processed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    finalized: bool = False
    logged_status: str = "validating"
    input_tokens: int = 0

    @property
    def validated_at(self) -> float:
        return self.created + self.timing["validating"]

    @property
    def processed_at(self) -> float:
        return self.validated_at + self.timing["in_progress"]

    @property
    def finalized_at(self) -> float:
        return self.processed_at + self.timing["finalizing"]

    def target(self) -> int:
        """How many lines will run before the batch ends (fewer when it expires)."""
        fraction = self.faults.expire_after_fraction
        return len(self.results) if fraction is None else math.floor(fraction * len(self.results))

    def progress(self, when: float) -> int:
        """Lines run by `when`, uncancelled."""
        if when < self.validated_at:
            return 0
        if when >= self.processed_at:
            return self.target()
        return math.floor(self.target() * (when - self.validated_at) / self.timing["in_progress"])

    def status(self, now: float) -> str:
        """The status at `now`."""
        if now <= self.created:
            return "validating"  # what batches.create returns, however short the phases are
        if self.cancel_requested is not None:
            return "cancelling" if now < self.cancel_requested + self.timing["cancelling"] else "cancelled"
        if self.failure is not None:
            return "validating" if now < self.validated_at else "failed"
        if now < self.validated_at:
            return "validating"
        if now < self.processed_at:
            return "in_progress"
        if self.faults.expire_after_fraction is not None:
            return "in_progress" if now < self.finalized_at else "expired"
        return "finalizing" if now < self.finalized_at else "completed"

    def processed(self, now: float) -> int:
        """Lines run so far."""
        return self.cancel_processed if self.cancel_requested is not None else self.progress(now)

    def path(self, status: str) -> list[str]:
        """The statuses this batch went through to reach `status`, in order."""
        if status in ("cancelling", "cancelled"):
            return ["cancelling", "cancelled"]
        if self.failure is not None:
            return ["validating", "failed"]
        if self.faults.expire_after_fraction is not None:
            return ["validating", "in_progress", "expired"]
        return ["validating", "in_progress", "finalizing", "completed"]


class EmulatorState:
    """Every file and batch, the current faults and the request counters, behind one lock."""

    def __init__(self, timing_scale: float = 1.0, faults: dict | None = None) -> None:
        self.lock = threading.RLock()
        self.timing_scale = timing_scale
        self.initial_faults = Faults().merged(faults or {})
        # Load the tokenizer (about 3 s) in the background now rather than inside the first batch's create.
        threading.Thread(target=_tokenizer, args=("o200k_base",), name="tokenizer-load", daemon=True).start()
        self.reset()

    def reset(self) -> None:
        """Forget every file, batch and counter; restore the start-up faults."""
        with self.lock:
            self.files: dict[str, StoredFile] = {}
            self.batches: dict[str, BatchRecord] = {}
            self.faults = Faults().merged(asdict(self.initial_faults))
            self.stats: dict[str, Any] = {"files_uploaded": 0, "batches_created": 0, "batches_cancelled": 0,
                                          "file_downloads": 0, "peak_enqueued_tokens": 0,
                                          "token_limit_failures": 0, "requests": {}, **_chat_stats()}
            self.chat_in_flight = 0

    def count(self, key: str) -> None:
        """Count one request to an endpoint (by method and route)."""
        with self.lock:
            self.stats["requests"][key] = self.stats["requests"].get(key, 0) + 1

    def count_chat(self, key: str) -> None:
        """Count one chat request's outcome."""
        with self.lock:
            self.stats[key] += 1

    def set_faults(self, update: dict) -> dict:
        """Merge knobs into the current faults and return the resulting view."""
        with self.lock:
            self.faults = self.faults.merged(update)
            return self.faults_view()

    def faults_view(self) -> dict:
        """The current faults and the timing a batch created now would get."""
        with self.lock:
            return {**asdict(self.faults), "effective_timing": resolve_timing(self.faults, self.timing_scale),
                    "timing_scale": self.timing_scale}

    # files

    def add_file(self, filename: str, purpose: str, data: bytes, lines: list[dict] | None = None) -> StoredFile:
        """Store a file and return it."""
        stored = StoredFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data, int(time.time()), lines)
        with self.lock:
            self.files[stored.id] = stored
        return stored

    def upload(self, filename: str, purpose: str, data: bytes) -> dict:
        """POST /v1/files."""
        if purpose not in FILE_PURPOSES:
            raise ApiError(400, f"Invalid purpose {purpose!r}.", param="purpose")
        with self.lock:
            max_lines = self.faults.max_requests_per_file or MAX_LINES
            max_bytes = self.faults.max_file_bytes or MAX_FILE_BYTES
        lines = validate_batch_file(data, max_lines, max_bytes) if purpose == "batch" else None
        stored = self.add_file(filename or "upload.jsonl", purpose, data, lines)
        with self.lock:
            self.stats["files_uploaded"] += 1
        return stored.view()

    def file(self, file_id: str) -> StoredFile:
        """A stored file, or a 404."""
        with self.lock:
            if file_id not in self.files:
                raise ApiError(404, f"No such File object: {file_id}", param="id", code="file_not_found")
            return self.files[file_id]

    def delete_file(self, file_id: str) -> dict:
        """DELETE /v1/files/{id}."""
        with self.lock:
            self.file(file_id)
            del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def download(self, file_id: str) -> bytes:
        """GET /v1/files/{id}/content."""
        with self.lock:
            data = self.file(file_id).data
            self.stats["file_downloads"] += 1
        return data

    def list_files(self, purpose: str | None, limit: int, after: str | None) -> dict:
        """GET /v1/files, newest first."""
        with self.lock:
            items = [f for f in reversed(self.files.values()) if purpose in (None, f.purpose)]
            return _page([f.view() for f in items], limit, after)

    # batches

    def create_batch(self, payload: dict) -> dict:
        """POST /v1/batches: validate the request, snapshot the faults, precompute every line."""
        input_file_id, metadata = _check_batch_request(payload)
        with self.lock:
            source = self.file(input_file_id)
            if source.purpose != "batch" or source.lines is None:
                raise ApiError(400, f"File {input_file_id} was not uploaded with purpose 'batch'.",
                               param="input_file_id")
            batch = self._new_batch(source, payload["endpoint"], metadata)
            self.batches[batch.id] = batch
            self.stats["batches_created"] += 1
            if batch.failure is None:
                live = self._live_tokens(batch.model, batch.created)
                self.stats["peak_enqueued_tokens"] = max(self.stats["peak_enqueued_tokens"], live)
            elif batch.failure[0]["code"] == "token_limit_exceeded":
                self.stats["token_limit_failures"] += 1
            log.info("batch %s: created (%d lines, %d input tokens) -> validating",
                     batch.id, len(batch.results), batch.input_tokens)
            return self._view(batch, batch.created)

    def _new_batch(self, source: StoredFile, endpoint: str, metadata: dict | None) -> BatchRecord:
        """Build the record of a new batch from its input file and the current faults."""
        faults = Faults().merged(asdict(self.faults))
        batch_id = f"batch_{uuid.uuid4().hex}"
        lines = source.lines or []
        models = sorted({str(line["body"].get("model")) for line in lines})
        results = run_lines(batch_id, lines, faults, int(time.time()))
        input_tokens = sum(prompt_tokens(line["body"])[0] for line in lines)
        now = time.time()  # after the (slow for big files) precomputation: the phases start now
        batch = BatchRecord(
            id=batch_id, input_file_id=source.id, endpoint=endpoint, metadata=metadata,
            model=models[0] if len(models) == 1 else None, created=now,
            timing=resolve_timing(faults, self.timing_scale), faults=faults, results=results,
        )
        batch.input_tokens = input_tokens
        batch.failure = self._validation_failure(batch, models, now)
        return batch

    def _validation_failure(self, batch: BatchRecord, models: list[str], now: float) -> list[dict] | None:
        """The errors.data a batch will fail validation with, or None."""
        if batch.faults.fail_validation:
            return [{"code": "invalid_json_line", "line": 1, "param": None,
                     "message": "This line is not parseable as valid JSON. (emulated fault: fail_validation)"}]
        if len(models) > 1:
            return [{"code": "model_mismatch", "line": None, "param": "body.model",
                     "message": f"All requests in a batch must use the same model; found {', '.join(models)}."}]
        limit = batch.faults.token_limit
        cap = batch.faults.enqueued_token_cap
        if limit is not None and self._enqueued_tokens(batch, now) > limit:
            return _token_limit_error(batch.model, limit)
        if cap is not None and batch.input_tokens + self._live_tokens(batch.model, now) > cap:
            return _token_limit_error(batch.model, cap)
        return None

    def _live_tokens(self, model: str | None, now: float) -> int:
        """Input tokens of every batch of `model` still enqueued (validating, in progress, finalizing)."""
        return sum(b.input_tokens for b in self.batches.values()
                   if b.model == model and b.failure is None and b.status(now) not in TERMINAL)

    def _enqueued_tokens(self, batch: BatchRecord, now: float) -> int:
        """Tokens counted against the cap: this batch's, plus (scope "enqueued") unfinished ones of its model."""
        total = batch.input_tokens
        if batch.faults.token_limit_scope == "enqueued":
            total += sum(b.input_tokens for b in self.batches.values()
                         if b.model == batch.model and b.failure is None and b.status(now) not in TERMINAL)
        return total

    def batch(self, batch_id: str) -> dict:
        """GET /v1/batches/{id}."""
        with self.lock:
            return self._view(self._record(batch_id), time.time())

    def _record(self, batch_id: str) -> BatchRecord:
        """A batch record, or a 404."""
        if batch_id not in self.batches:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id", code="batch_not_found")
        return self.batches[batch_id]

    def cancel(self, batch_id: str) -> dict:
        """POST /v1/batches/{id}/cancel: lines run so far are kept, the rest will be batch_cancelled."""
        with self.lock:
            batch, now = self._record(batch_id), time.time()
            status = batch.status(now)
            if status in TERMINAL:
                raise ApiError(400, f"Cannot cancel a batch with status '{status}'.", param="batch_id")
            if status != "cancelling":
                batch.cancel_processed = batch.progress(now)
                self._log_path(batch, status)
                batch.cancel_requested = now
                self.stats["batches_cancelled"] += 1
            return self._view(batch, now)

    def list_batches(self, limit: int, after: str | None) -> dict:
        """GET /v1/batches, newest first, with cursor pagination."""
        with self.lock:
            now = time.time()
            views = [self._view(b, now) for b in reversed(self.batches.values())]
        return _page(views, limit, after)

    def _view(self, batch: BatchRecord, now: float) -> dict:
        """The Batch object at `now` (writing the output files the first time it is seen finished)."""
        status = batch.status(now)
        self._log_path(batch, status)
        if status in TERMINAL and not batch.finalized:
            self._finalize(batch, status, now)
        processed = batch.results[: batch.processed(now)]
        if batch.failure is not None:
            processed = []
        ok = sum(1 for r in processed if r.ok)
        total = 0 if batch.failure is not None else len(batch.results)
        failed = (total - ok) if status in ("expired", "cancelled") else len(processed) - ok
        return {
            "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "model": batch.model,
            "errors": {"object": "list", "data": batch.failure} if batch.failure and status == "failed" else None,
            "input_file_id": batch.input_file_id, "completion_window": COMPLETION_WINDOW, "status": status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            **_timestamps(batch, status),
            "request_counts": {"total": total, "completed": ok, "failed": failed},
            "usage": _sum_usage([r.usage for r in processed]),
            "metadata": batch.metadata,
        }

    def _log_path(self, batch: BatchRecord, status: str) -> None:
        """Log one line per state change since the batch was last observed."""
        if status == batch.logged_status:
            return
        path = batch.path(status)
        start = path.index(batch.logged_status) + 1 if batch.logged_status in path else 0
        previous = batch.logged_status
        for step in path[start: path.index(status) + 1]:
            log.info("batch %s: %s -> %s", batch.id, previous, step)
            previous = step
        batch.logged_status = status

    def _finalize(self, batch: BatchRecord, status: str, now: float) -> None:
        """Write the output and error files of a finished batch (once)."""
        batch.finalized = True
        if status == "failed":
            return
        done = batch.processed(now)
        ran, unrun = batch.results[:done], batch.results[done:]
        code = "batch_cancelled" if status == "cancelled" else "batch_expired"
        output = [r.record for r in ran if r.ok]
        errors = [r.record for r in ran if not r.ok] + [r.unrun(code) for r in unrun]
        batch.output_file_id = self._result_file(batch.id, "output", output)
        batch.error_file_id = self._result_file(batch.id, "error", errors)

    def _result_file(self, batch_id: str, kind: str, records: list[dict]) -> str | None:
        """Store a batch_output JSONL file, or None when there is nothing to put in it."""
        if not records:
            return None
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        return self.add_file(f"{batch_id}_{kind}.jsonl", "batch_output", data).id


def _chat_stats() -> dict[str, Any]:
    """Counters of POST /v1/chat/completions: requests by outcome, the most at once, answers by request body."""
    return {"chat_requests": 0, "chat_completed": 0, "chat_rate_limited": 0, "chat_server_errors": 0,
            "chat_malformed": 0, "chat_peak_in_flight": 0, "chat_completed_by_body": {}}


def chat_request(state: EmulatorState, body: Any) -> Response:
    """POST /v1/chat/completions: the batch path's deterministic grading for one request, with the chat faults."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                       code="missing_required_parameter")
    with state.lock:
        faults = state.faults
        state.stats["chat_requests"] += 1
        state.chat_in_flight += 1
        state.stats["chat_peak_in_flight"] = max(state.stats["chat_peak_in_flight"], state.chat_in_flight)
        fault = next((k for k in ("chat_rate_limit_next", "chat_server_error_next", "chat_malformed_next")
                      if getattr(faults, k) > 0), None)
        if fault:
            setattr(faults, fault, getattr(faults, fault) - 1)
        latency = faults.chat_latency_ms / 1000
    try:
        if latency:
            time.sleep(latency)
        if fault == "chat_rate_limit_next":
            state.count_chat("chat_rate_limited")
            return JSONResponse({"error": {"message": "Rate limit reached for requests (emulated fault).",
                                           "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                                status_code=429, headers={"retry-after": "0"})
        if fault == "chat_server_error_next":
            state.count_chat("chat_server_errors")
            return JSONResponse(server_error_body(), status_code=500)
        key = _sha(json.dumps(body, sort_keys=True, default=str))
        completion = chat_completion(body, _sha("chat", key), None, int(time.time()), 0)
        if fault == "chat_malformed_next":
            state.count_chat("chat_malformed")
            text = json.dumps(completion)
            return Response(text[: len(text) // 2], media_type="application/json")
        with state.lock:
            state.stats["chat_completed"] += 1
            by_body = state.stats["chat_completed_by_body"]
            by_body[key[:16]] = by_body.get(key[:16], 0) + 1
        return JSONResponse(completion, headers={"x-request-id": f"req_{key[:32]}"})
    finally:
        with state.lock:
            state.chat_in_flight -= 1


def _token_limit_error(model: str | None, limit: int) -> list[dict]:
    """errors.data of a batch refused for the organisation's enqueued-token limit (accepted, then failed)."""
    return [{"code": "token_limit_exceeded", "line": None, "param": None, "message": (
        f"Enqueued token limit reached for {model} in organization org-emulator. "
        f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches have been "
        "completed.")}]


def _check_batch_request(payload: dict) -> tuple[str, dict | None]:
    """Validate POST /v1/batches; return (input_file_id, metadata)."""
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    if payload["endpoint"] != ENDPOINT:
        raise ApiError(400, f"The emulator supports only endpoint {ENDPOINT}.", param="endpoint")
    if payload["completion_window"] != COMPLETION_WINDOW:
        raise ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.",
                       param="completion_window", code="invalid_value")
    return payload["input_file_id"], _check_metadata(payload.get("metadata"))


def _check_metadata(metadata: Any) -> dict | None:
    """At most 16 string keys of up to 64 characters, with string values of up to 512."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise ApiError(400, "metadata must be an object with at most 16 keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise ApiError(400, f"metadata[{key!r}]: keys up to 64 characters, string values up to 512.",
                           param="metadata")
    return dict(metadata)


def _timestamps(batch: BatchRecord, status: str) -> dict:
    """The Unix timestamps a batch shows in `status`."""
    reached = set(batch.path(status)[: batch.path(status).index(status) + 1])
    stamps = {name: None for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                                      "cancelling_at", "cancelled_at")}
    stamps["created_at"] = int(batch.created)
    stamps["expires_at"] = int(batch.created) + WINDOW_SECONDS
    if status == "failed":
        stamps["failed_at"] = int(batch.validated_at)
        return stamps
    if batch.cancel_requested is not None:
        return _cancel_timestamps(batch, status, stamps)
    for name, when in (("in_progress", batch.validated_at), ("finalizing", batch.processed_at),
                       ("completed", batch.finalized_at), ("expired", batch.finalized_at)):
        if name in reached:
            stamps[f"{name}_at"] = int(when)
    return stamps


def _cancel_timestamps(batch: BatchRecord, status: str, stamps: dict) -> dict:
    """Timestamps of a cancelled (or cancelling) batch."""
    requested = batch.cancel_requested or batch.created
    if requested >= batch.validated_at:
        stamps["in_progress_at"] = int(batch.validated_at)
    stamps["cancelling_at"] = int(requested)
    if status == "cancelled":
        stamps["cancelled_at"] = int(requested + batch.timing["cancelling"])
    return stamps


def _page(items: list[dict], limit: int, after: str | None) -> dict:
    """A cursor page: the `limit` items after the one whose id is `after`."""
    if not 1 <= limit <= 100:
        raise ApiError(400, "limit must be between 1 and 100.", param="limit")
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise ApiError(400, f"Invalid 'after': no object with id {after!r}.", param="after")
        start = ids.index(after) + 1
    data = items[start: start + limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": start + limit < len(items)}


# -------------------------------------------------------------------------------------------- app


def create_app(state: EmulatorState) -> FastAPI:
    """The FastAPI application serving `state`."""
    app = FastAPI(title="OpenAI Batch API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state
    _add_error_handlers(app)
    _add_counter(app, state)
    _add_file_routes(app, state)
    _add_batch_routes(app, state)
    _add_chat_routes(app, state)
    _add_control_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Errors in OpenAI's shape, including FastAPI's own request validation errors."""
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return ApiError(400, f"Invalid request: {first.get('msg', 'bad request')}", param=param).response()


def _add_counter(app: FastAPI, state: EmulatorState) -> None:
    """Count requests per endpoint (method and route template) for GET /_emulator/stats."""
    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        state.count(f"{request.method} {getattr(route, 'path', request.url.path)}")
        return response


def _add_file_routes(app: FastAPI, state: EmulatorState) -> None:
    """The Files endpoints."""
    @app.post("/v1/files")
    def upload_file(file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> dict:
        return state.upload(file.filename or "", purpose, file.file.read())

    @app.get("/v1/files")
    def list_files(purpose: str | None = None, limit: int = 100, after: str | None = None) -> dict:
        return state.list_files(purpose, limit, after)

    @app.get("/v1/files/{file_id}")
    def retrieve_file(file_id: str) -> dict:
        return state.file(file_id).view()

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str) -> dict:
        return state.delete_file(file_id)

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str) -> Response:
        return Response(state.download(file_id), media_type="application/octet-stream")


def _add_batch_routes(app: FastAPI, state: EmulatorState) -> None:
    """The Batches endpoints."""
    @app.post("/v1/batches")
    def create_batch(payload: Annotated[dict, Body()]) -> dict:
        return state.create_batch(payload)

    @app.get("/v1/batches")
    def list_batches(limit: int = 20, after: str | None = None) -> dict:
        return state.list_batches(limit, after)

    @app.get("/v1/batches/{batch_id}")
    def retrieve_batch(batch_id: str) -> dict:
        return state.batch(batch_id)

    @app.post("/v1/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str) -> dict:
        return state.cancel(batch_id)


def _add_chat_routes(app: FastAPI, state: EmulatorState) -> None:
    """The synchronous chat-completions endpoint (served from the thread pool: requests run concurrently)."""
    @app.post(ENDPOINT)
    def chat_completions(body: Annotated[dict, Body()]) -> Response:
        return chat_request(state, body)


def _add_control_routes(app: FastAPI, state: EmulatorState) -> None:
    """The emulator's own control endpoints."""
    @app.get("/_emulator/faults")
    def get_faults() -> dict:
        return state.faults_view()

    @app.post("/_emulator/faults")
    def set_faults(knobs: Annotated[dict, Body()]) -> dict:
        return state.set_faults(knobs)

    @app.post("/_emulator/reset")
    def reset() -> dict:
        state.reset()
        return {"reset": True, **state.faults_view()}

    @app.get("/_emulator/stats")
    def stats() -> dict:
        with state.lock:
            return json.loads(json.dumps(state.stats))

    @app.get("/_emulator/health")
    def health() -> dict:
        return {"ok": True}


# ----------------------------------------------------------------------------------------- server


class EmulatorServer:
    """The emulator served by uvicorn in a daemon thread (for tests); port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timing_scale: float = 1.0,
                 faults: dict | None = None, log_level: str = "warning") -> None:
        self.host = host
        self.state = EmulatorState(timing_scale, faults)
        self.app = create_app(self.state)
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, lifespan="off",
                                access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="batch-emulator", daemon=True)
        self.port = port

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Start serving; return once the socket listens (with the real port filled in)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"batch emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:8765 (control endpoints live under /_emulator)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base_url, e.g. http://127.0.0.1:8765/v1."""
        return f"{self.url}/v1"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> EmulatorServer:
        return self.start() if not self._server.started else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(port: int = 0, host: str = "127.0.0.1", timing_scale: float = 1.0,
                    faults: dict | None = None, log_level: str = "warning") -> EmulatorServer:
    """Start an emulator in a daemon thread and return its running handle (.base_url, .url, .stop())."""
    return EmulatorServer(host, port, timing_scale, faults, log_level).start()


def main(argv: list[str] | None = None) -> int:
    """CLI: serve the emulator with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--timing-scale", type=float, default=1.0,
                        help="multiplies the default phase durations (0.3 s validating, 1 s in progress, "
                             "0.3 s finalizing); 0 finishes batches at once")
    parser.add_argument("--faults", default="{}", help="initial fault knobs as JSON (restored by /_emulator/reset)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true", help="also log every HTTP request (noisy when polling)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        state = EmulatorState(args.timing_scale, json.loads(args.faults))
    except (ValueError, ApiError) as exc:
        parser.error(f"--faults: {exc}")
    log.info("OpenAI Batch API emulator on http://%s:%d/v1 (timing scale %g)", args.host, args.port,
             args.timing_scale)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level=args.log_level, lifespan="off",
                access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
