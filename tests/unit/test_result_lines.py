"""Result lines read fast (batch.read_line, msgspec) are judged exactly as json.loads' reading of them.

Collect reads each line of a job's output and error files with `batch.read_line` instead of `json.loads`; every
verdict `parse_line` gives (score, codes, messages, confidence and its source, tokens, and any exception) must be
the one it gives the line read by `json.loads`: over the emulator's own replies of every kind, over the same
replies bent in every field judging reads, and over arbitrary JSON put where those fields are.
"""

from __future__ import annotations

import copy
import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack import batch_emulator
from gradeflow.grading import batch

QUESTION = {"qtype": "short_answer", "max_points": 3, "prompt": "What does the mitochondrion do?",
            "rubric": "ATP and respiration", "reference_answer": "It makes ATP by cellular respiration."}
ITEMS = [{"id": "c1", "description": "mentions ATP", "points": 1},
         {"id": "c2", "description": "names cellular respiration", "points": 2}]
ANSWERS = ("Mitochondria make ATP by cellular respiration.", "no idea", "ATP")


def _verdict(read, raw, items=None, answer=None) -> str:
    """What judging the line gives: the LineResult, or the exception (type and message) on the way."""
    try:
        return repr(batch.parse_line(read(raw), 3.0, items, answer))
    except Exception as exc:  # noqa: BLE001 - the very exception is what must match
        return f"raises {type(exc).__name__}: {exc}"


def assert_same_verdict(raw, items=None, answer=None) -> None:
    expected = _verdict(json.loads, raw, items, answer)
    assert _verdict(batch.read_line, raw, items, answer) == expected, raw
    if isinstance(raw, str):
        encoded = raw.encode("utf-8", "surrogatepass")
        assert _verdict(batch.read_line, encoded, items, answer) == _verdict(json.loads, encoded, items, answer)


def _line(body: dict, cid: str = "gf1-x") -> dict:
    return {"id": "batch_req_1", "custom_id": cid, "response": {"status_code": 200, "request_id": "req_1",
                                                                "body": body}, "error": None}


def emulator_lines() -> list[tuple[dict, list | None, str | None]]:
    """The emulator's replies (with token log-probabilities) to holistic and rubric-item questions, of every fault."""
    out = []
    for fault in (None, "refusal", "malformed", "out_of_range"):
        for question, items in ((QUESTION, None), ({**QUESTION, "rubric_items": ITEMS}, ITEMS)):
            for answer in ANSWERS:
                request = batch.build_request("gf1-x", "gpt-4.1-mini", question, answer)
                body = batch_emulator.chat_completion(request["body"], "s" * 40, fault, 1, 0)
                out.append((_line(body), items, answer if items else None))
    return out


LINES = emulator_lines()


def test_the_emulators_lines_read_fast_are_judged_the_same():
    results = []
    for line, items, answer in LINES:
        raw = json.dumps(line)
        assert_same_verdict(raw, items, answer)
        results.append(batch.parse_line(batch.read_line(raw), 3.0, items, answer))
    assert {r.code for r in results} >= {None, "refusal", "truncated"}  # every kind was there
    assert {r.confidence_source for r in results if r.ok} == {"logprobs"}


def test_error_lines_and_lines_that_are_not_json():
    expired = {"id": "r", "custom_id": "c1", "response": None,
               "error": {"code": "batch_expired", "message": "This request could not be executed in time."}}
    http_500 = {"id": "r", "custom_id": "c2", "error": None, "response": {
        "status_code": 500, "request_id": "q", "body": batch_emulator.server_error_body()}}
    for line in (expired, http_500):
        assert_same_verdict(json.dumps(line))
    for raw in ('{"custom_id": "c", "response": {"status_code": 200', "not json", '{"a": NaN, "custom_id": 1}',
                '{"custom_id": "\\ud800", "response": {"status_code": 200, "body": {}}}', '\ufeff{"custom_id": 1}',
                '{"custom_id": "a\ud800", "response": {"status_code": 200, "body": {}}}'):  # the surrogate itself
        assert_same_verdict(raw)
    with pytest.raises(json.JSONDecodeError):
        batch.read_line('{"custom_id": "c", "response": ')


# Values that test the readers' edges: JSON's other types where a string or a number is expected, numbers at
# and past float's range, a bool where a number is expected, a lone surrogate.
ODD = [None, True, False, 0, 1, -0.0, 200, 200.0, "200", "", "x", "\ud800", [], [1], {}, {"a": 1}, 2 ** 70,
       1e308, -1e308, math.inf, math.nan, -5, 0.30000000000000004]


def _bend(line: dict, rng: random.Random, value) -> dict:
    """The line with `value` put at one place that judging reads (or a token dropped, added or split)."""
    line = copy.deepcopy(line)
    body = line["response"]["body"]
    choice = body["choices"][0]
    tokens = (choice.get("logprobs") or {}).get("content") or [{"token": "", "logprob": 0}]
    i = rng.randrange(len(tokens))
    place = rng.randrange(16)
    if place == 0:
        tokens[i]["logprob"] = value
    elif place == 1:
        tokens[i]["token"] = value
    elif place == 2:
        del tokens[i]
    elif place == 3:
        tokens.insert(i, {"token": "", "logprob": value})
    elif place == 4:
        choice["logprobs"] = value
    elif place == 5:
        line["response"]["status_code"] = value
    elif place == 6:
        line["error"] = value
    elif place == 7:
        body["usage"] = value
    elif place == 8:
        body["choices"] = value
    elif place == 9:
        choice["message"] = value
    elif place == 10:
        choice["finish_reason"] = value
    elif place == 11:
        line["response"] = value
    elif place == 12:
        line["custom_id"] = value
    elif place == 13:
        choice["message"]["content"] = value
    elif place == 14:
        body["usage"]["prompt_tokens"] = value
    else:  # a token split in two: the same text, two log-probabilities
        piece = tokens[i].get("token")
        if isinstance(piece, str) and len(piece) > 1:
            tokens[i:i + 1] = [{"token": piece[:1], "logprob": -0.25}, {"token": piece[1:], "logprob": -0.5}]
    return line


@pytest.mark.parametrize("seed", range(4))
def test_bent_lines_are_judged_the_same(seed):
    rng = random.Random(seed)
    for line, items, answer in LINES:
        for _ in range(40):
            assert_same_verdict(json.dumps(_bend(line, rng, rng.choice(ODD))), items, answer)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(LINES))), st.randoms(use_true_random=False), json_values, st.booleans())
def test_arbitrary_json_in_any_field_is_judged_the_same(index, rng, value, ascii_only):
    """Also as text that holds its non-ASCII characters (and lone surrogates) as they are, not escaped."""
    line, items, answer = LINES[index]
    assert_same_verdict(json.dumps(_bend(line, rng, value), ensure_ascii=ascii_only), items, answer)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(LINES))), st.integers(min_value=0), st.integers(min_value=0, max_value=6),
       st.text(alphabet='{}[]",:0123456789.eE-+tfnaNI \\u', max_size=4))
def test_damaged_text_is_judged_the_same(index, at, cut, insert):
    """Characters cut from or put into a line's text: the same verdict, or the same JSONDecodeError."""
    line, items, answer = LINES[index]
    raw = json.dumps(line)
    at %= len(raw)
    assert_same_verdict(raw[:at] + insert + raw[at + cut:], items, answer)


def _reference_confidence(content: str, logprobs: object) -> float | None:
    """logprob_confidence as it was written first (each token against each value), to compare with."""
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not tokens or not isinstance(tokens, list):
        return None
    spans = [(m.start(2), m.end(2)) for m in batch._DECISION_VALUE.finditer(content)]
    sums = [0.0] * len(spans)
    position, text = 0, []
    for token in tokens:
        piece, logprob = (token.get("token"), token.get("logprob")) if isinstance(token, dict) else (None, None)
        if not isinstance(piece, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
            return None
        start, end = position, position + len(piece)
        for i, (a, b) in enumerate(spans):
            if start < b and end > a:
                sums[i] += float(logprob)
        position = end
        text.append(piece)
    if not spans or "".join(text) != content or not all(math.isfinite(x) for x in sums):
        return None
    return min(max(math.exp(min(sums)), 0.0), 1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(['"score"', '"met"', ":", " ", "1", "2.5", "-0", "e3", "true", "false",
                                           ",", "{", "}", '"x"', ""]),
                          st.floats(min_value=-30, max_value=0) | st.integers(min_value=-3, max_value=0)),
                max_size=25),
       st.integers(min_value=0, max_value=3))
def test_logprob_confidence_sums_each_value_as_before(pieces, drop):
    """Tokens of any length (empty ones too) over any values: the same confidence as the first implementation,
    also when the tokens do not spell the content."""
    content = "".join(p for p, _ in pieces)
    logprobs = {"content": [{"token": p, "logprob": v} for p, v in pieces]}
    assert batch.logprob_confidence(content, logprobs) == _reference_confidence(content, logprobs)
    shorter = content[:-drop] if drop else content + "x"
    assert batch.logprob_confidence(shorter, logprobs) == _reference_confidence(shorter, logprobs)
