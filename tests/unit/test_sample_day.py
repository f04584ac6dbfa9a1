"""devstack.sample_day: the sample exam day follows the file contract and its manifest is exact."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from devstack import sample_day

DAY = date(2026, 11, 23)
INSTITUTIONS = ["northfield", "lakeshore", "rheinwald"]
SMALL = 20
COLUMNS = ["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"]
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OFFSETS = {"northfield": "-05:00", "lakeshore": "+05:30", "rheinwald": "+01:00"}


# ---------------------------------------------------------------- helpers

def _generate(root: Path, **kwargs) -> dict:
    args = {"seed": 7, "submissions_per_exam": SMALL} | kwargs
    institutions = args.pop("institutions", INSTITUTIONS)
    return sample_day.generate_day(root, institutions, args.pop("exam_day", DAY), **args)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def _text(value) -> str:
    return "" if _blank(value) else str(value)


def _read(path: Path) -> pd.DataFrame:
    """Read a submissions file with pandas/pyarrow by its suffix, keeping every value as text."""
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    assert path.suffix == ".parquet"
    return pq.read_table(path).to_pandas()


def _rows(path: Path) -> list[dict]:
    return _read(path).to_dict("records")


def _exams(root: Path, files: list[str]) -> dict[str, dict]:
    return {doc["exam_id"]: doc for doc in (json.loads((root / k).read_text()) for k in files if "/exams/" in k)}


def _defects(row: dict, exams: dict[str, dict]) -> list[str]:
    """Every way a row breaks the contract, checked independently of the generator."""
    found = []
    if _blank(row["student_id"]):
        found.append("student_id")
    if row["exam_id"] not in exams:
        found.append("exam_id")
    elif row["question_id"] not in {q["question_id"] for q in exams[row["exam_id"]]["questions"]}:
        found.append("question_id")
    try:
        if datetime.fromisoformat(_text(row["submitted_at"])).tzinfo is None:
            found.append("submitted_at")
    except ValueError:
        found.append("submitted_at")
    if len(_text(row["answer"])) > 20_000:
        found.append("answer")
    return found


def _submission_rows(root: Path, entry: dict, *, with_duplicate: bool = False) -> list[dict]:
    keys = [k for k in entry["files"] if "/submissions/" in k and (with_duplicate or k != entry["duplicate_file"])]
    return [row for key in keys for row in _rows(root / key)]


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """One small sample day for the three tenants of institutions.yaml."""
    root = tmp_path_factory.mktemp("sample-day")
    return root, _generate(root)


# ---------------------------------------------------------------- determinism

def test_same_seed_same_bytes(day, tmp_path):
    root, manifest = day
    assert _generate(tmp_path / "again") == manifest
    assert _all_files(tmp_path / "again") == _all_files(root)
    _generate(tmp_path / "other", seed=8)
    assert _all_files(tmp_path / "other") != _all_files(root)


def test_an_institution_does_not_depend_on_the_others(day, tmp_path):
    root, manifest = day
    alone = _generate(tmp_path, institutions=["lakeshore"])
    assert alone["lakeshore"] == manifest["lakeshore"]
    assert _all_files(tmp_path) == {k: v for k, v in _all_files(root).items() if k.startswith("incoming/lakeshore/")}


def test_regenerating_replaces_the_day_folder(tmp_path):
    first = _generate(tmp_path, institutions=["northfield"], seed=1)
    second = _generate(tmp_path, institutions=["northfield"], seed=2)
    on_disk = sorted(_all_files(tmp_path))
    assert on_disk == sorted(second["northfield"]["files"])
    assert first != second


# ---------------------------------------------------------------- manifest and files

def test_manifest_counts_match_the_files(day):
    root, manifest = day
    assert list(manifest) == INSTITUTIONS
    for inst, entry in manifest.items():
        exams = _exams(root, entry["files"])
        rows = _submission_rows(root, entry)
        good = [r for r in rows if not _defects(r, exams)]
        bad = Counter(d for r in rows for d in _defects(r, exams))
        assert entry["exams"] == len(exams)
        assert entry["answers"] == len(good)
        assert entry["submissions"] == len({r["submission_id"] for r in good})
        assert entry["bad_rows"] == len(rows) - len(good) == sum(bad.values())
        assert entry["bad_rows_by_field"] == {f: bad[f] for f in sample_day.DEFECTS}
        # one row per answer: a good (submission_id, question_id) appears once, across all files
        assert len({(r["submission_id"], r["question_id"]) for r in good}) == len(good)
        listed = sorted(entry["files"])
        assert listed == sorted(k for k in _all_files(root) if k.startswith(f"incoming/{inst}/"))


def test_manifest_keys_and_layout(day):
    _, manifest = day
    for inst, entry in manifest.items():
        prefix = f"incoming/{inst}/{DAY.isoformat()}/"
        assert all(k.startswith(prefix) for k in entry["files"])
        assert all(re.fullmatch(r"(exams/[A-Za-z0-9._-]+\.json|submissions/[^/]+\.(csv|jsonl|parquet))",
                                k[len(prefix):]) for k in entry["files"])
        kinds = ["exam" if "/exams/" in k else "sub" for k in entry["files"]]
        assert kinds == sorted(kinds), "exam files come first"
        assert entry["files"][-1] == entry["duplicate_file"]


def test_every_file_parses_in_its_format(day):
    root, manifest = day
    for entry in manifest.values():
        subs = [k for k in entry["files"] if "/submissions/" in k]
        assert {Path(k).suffix for k in subs} == {".csv", ".jsonl", ".parquet"}
        assert len(subs) >= 4, "split over several files"
        for key in subs:
            frame = _read(root / key)
            assert list(frame.columns) == COLUMNS, key
            assert len(frame) > 0, key
            if key.endswith(".parquet"):
                schema = pq.read_schema(root / key)
                assert all(str(schema.field(c).type) in ("string", "large_string") for c in COLUMNS)
            if key.endswith(".csv"):
                assert (root / key).read_bytes().decode("utf-8").startswith(",".join(COLUMNS))
            if key.endswith(".jsonl"):
                for line in (root / key).read_text(encoding="utf-8").splitlines():
                    assert list(json.loads(line)) == COLUMNS


# ---------------------------------------------------------------- exams

def _check_question(q: dict) -> None:
    assert ID_RE.match(q["question_id"])
    assert q["type"] in {"multiple_choice", "true_false", "numeric", "short_answer", "essay"}
    assert isinstance(q["max_points"], (int, float)) and not isinstance(q["max_points"], bool)
    assert q["max_points"] > 0
    assert isinstance(q["prompt"], str) and q["prompt"].strip()
    if q["type"] == "multiple_choice":
        key = q["answer_key"] if isinstance(q["answer_key"], list) else [q["answer_key"]]
        assert key and set(key) <= set(q["options"])
    elif q["type"] == "true_false":
        assert isinstance(q["answer_key"], bool)
    elif q["type"] == "numeric":
        assert isinstance(q["answer_key"], (int, float)) and not isinstance(q["answer_key"], bool)
        assert q.get("tolerance", 0) >= 0
    elif isinstance(q["rubric"], list):  # rubric items: earning items add up to max_points, one deduction
        assert sum(c["points"] for c in q["rubric"] if c["points"] > 0) == q["max_points"]
        assert any(c["points"] < 0 for c in q["rubric"]) and all(c["description"].strip() for c in q["rubric"])
    else:
        assert q["rubric"].strip()
    if q["type"] in {"short_answer", "essay"}:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", q["reference_answer"].strip()) if s]
        assert 1 <= len(sentences) <= 3, q["reference_answer"]
        assert "answer_key" not in q


def test_exam_definitions_follow_the_contract(day):
    root, manifest = day
    for entry in manifest.values():
        exams = _exams(root, entry["files"])
        assert 2 <= len(exams) <= 3
        for key in (k for k in entry["files"] if "/exams/" in k):
            doc = json.loads((root / key).read_text(encoding="utf-8"))
            assert set(doc) == {"exam_id", "title", "questions"}
            assert Path(key).name == f"{doc['exam_id']}.json" and ID_RE.match(doc["exam_id"])
            ids = [q["question_id"] for q in doc["questions"]]
            assert len(ids) == len(set(ids))
            for q in doc["questions"]:
                _check_question(q)
            types = Counter(q["type"] for q in doc["questions"])
            assert set(types) == {"multiple_choice", "true_false", "numeric", "short_answer", "essay"}
            assert any(isinstance(q.get("answer_key"), list) and len(q["answer_key"]) > 1 for q in doc["questions"])
            assert any(q["type"] == "numeric" and q["tolerance"] > 0 for q in doc["questions"])


def test_the_bank_covers_several_subjects():
    titles = " ".join(e.title.lower() for e in sample_day.EXAM_BANK)
    for subject in ("biology", "history", "physics", "chemistry", "economics", "earth science"):
        assert subject in titles
    ids = [e.exam_id for e in sample_day.EXAM_BANK]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- rows

def test_bad_rows_carry_exactly_the_intended_defects(day):
    root, manifest = day
    for entry in manifest.values():
        exams = _exams(root, entry["files"])
        rows = _submission_rows(root, entry)
        defects = [_defects(r, exams) for r in rows]
        assert all(len(d) <= 1 for d in defects), "one defect per bad row"
        kinds = Counter(d[0] for d in defects if d)
        assert set(kinds) == set(sample_day.DEFECTS)
        assert 0.005 <= sum(kinds.values()) / len(rows) <= 0.05, "about 1%"
        long_ones = [r for r in rows if len(_text(r["answer"])) > 20_000]
        assert long_ones and all(len(r["answer"]) < 30_000 for r in long_ones)
        unknown = [r for r, d in zip(rows, defects, strict=True) if d == ["exam_id"]]
        assert all(not _blank(r["exam_id"]) for r in unknown), "a typo, not an empty id"


def test_duplicate_file_has_identical_bytes(day):
    root, manifest = day
    for entry in manifest.values():
        dup = root / entry["duplicate_file"]
        same = [k for k in entry["files"] if k != entry["duplicate_file"]
                and (root / k).read_bytes() == dup.read_bytes()]
        assert len(same) == 1
        assert Path(same[0]).suffix == dup.suffix and same[0] < entry["duplicate_file"]
        with_dup = _submission_rows(root, entry, with_duplicate=True)
        assert len(with_dup) == entry["answers"] + entry["bad_rows"] + len(_rows(dup))


@pytest.mark.parametrize("inst", INSTITUTIONS)
def test_submitted_at_is_local_exam_day_with_offset(day, inst):
    root, manifest = day
    entry = manifest[inst]
    exams = _exams(root, entry["files"])
    stamps = [r["submitted_at"] for r in _submission_rows(root, entry) if "submitted_at" not in _defects(r, exams)]
    assert stamps
    for stamp in stamps:
        assert stamp.endswith(OFFSETS[inst]), stamp
        moment = datetime.fromisoformat(stamp)
        assert moment.date() == DAY and 8 <= moment.hour <= 17, stamp


def test_summer_time_offsets(tmp_path):
    manifest = _generate(tmp_path, institutions=["northfield", "rheinwald"], exam_day=date(2026, 7, 1),
                         submissions_per_exam=3)
    for inst, offset in (("northfield", "-04:00"), ("rheinwald", "+02:00")):
        exams = _exams(tmp_path, manifest[inst]["files"])
        rows = _submission_rows(tmp_path, manifest[inst])
        good = [r["submitted_at"] for r in rows if "submitted_at" not in _defects(r, exams)]
        assert good and all(s.endswith(offset) for s in good)


def test_custom_timezones_and_argument_checks(tmp_path):
    manifest = _generate(tmp_path, institutions=["demo"], timezones={"demo": "Asia/Kolkata"},
                         submissions_per_exam=2)
    rows = _submission_rows(tmp_path, manifest["demo"])
    assert any(r["submitted_at"].endswith("+05:30") for r in rows)
    with pytest.raises(ValueError, match="time zone"):
        _generate(tmp_path, institutions=["nowhere"])
    with pytest.raises(ValueError, match="at least 2"):
        _generate(tmp_path, submissions_per_exam=1)


def test_answers_are_realistic_and_varied(day):
    root, manifest = day
    for entry in manifest.values():
        exams = _exams(root, entry["files"])
        rows = [r for r in _submission_rows(root, entry) if not _defects(r, exams)]
        questions = {(e, q["question_id"]): q for e, doc in exams.items() for q in doc["questions"]}
        by_type: dict[str, list[tuple[dict, str]]] = {}
        for r in rows:
            q = questions[(r["exam_id"], r["question_id"])]
            by_type.setdefault(q["type"], []).append((q, _text(r["answer"])))

        mc = [(q, a) for q, a in by_type["multiple_choice"] if not isinstance(q["answer_key"], list)]
        assert any(a == q["answer_key"] for q, a in mc) and any(a and a != q["answer_key"] for q, a in mc)

        distances = [abs(float(a) - q["answer_key"]) for q, a in by_type["numeric"]
                     if re.fullmatch(r"-?\d+(\.\d+)?", a)]
        tolerances = [q["tolerance"] for q, _ in by_type["numeric"]]
        assert any(d == 0 for d in distances) and any(d > 5 * max(tolerances) for d in distances)
        assert any(0 < d <= max(tolerances) for d in distances), "near but not exact"

        free = by_type["short_answer"] + by_type["essay"]
        assert any(a == "" for _, a in free), "some empty answers"
        assert any(a == q["reference_answer"] or a[:40] in q["reference_answer"] for q, a in free if a)
        shorts = Counter((q["question_id"], a) for q, a in by_type["short_answer"] if a)
        assert max(shorts.values()) >= 3, "several students give the very same short answer"
        lengths = sorted(len(a) for _, a in by_type["essay"])
        assert lengths[-1] > 200 and lengths[len(lengths) // 2] > 100


# ---------------------------------------------------------------- CLI (upload: tests/integration)

def test_cli_prints_the_manifest(tmp_path, capsys):
    assert sample_day.main(["--out", str(tmp_path), "--day", "2026-11-23", "--institutions", "northfield,lakeshore",
                            "--submissions", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["northfield", "lakeshore"]
    assert printed == _generate(tmp_path / "again", institutions=["northfield", "lakeshore"], submissions_per_exam=4)
    for entry in printed.values():
        assert all((tmp_path / k).is_file() for k in entry["files"])


def test_cli_defaults_to_institutions_yaml(tmp_path, capsys):
    sample_day.main(["--out", str(tmp_path), "--day", "2026-11-23", "--submissions", "2"])
    assert list(json.loads(capsys.readouterr().out)) == list(sample_day.load_timezones())
