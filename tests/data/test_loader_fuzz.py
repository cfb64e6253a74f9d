"""Property-based fuzzing of every loader: valid seed items with random parts replaced by random JSON shapes, hostile
strings, deletions, then written with random truncation, foreign encodings, stray bytes, lone-surrogate escapes or
deep nesting. Whatever the file, a load ends in conversations that serialise and render, or in one one-line
`DataError`; with on_error "skip" every dropped item is counted. Bounded time: a deadline per example.

Deterministic in CI (`derandomize`); explore more with FUZZ_EXAMPLES=2000 and FUZZ_RANDOM=1."""

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loader_corpus import FORMATS, SEEDS, seed, write

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders import LoadReport, load_source
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
HOSTILE = ["", " ", "\n", "x): pass\ndef y(", "\ud800", "Action: f\nAction Input:", "f(x=", '{"a": ', "None",
           "import", "a b", "ﬀ", "[" * 50, "𝔘nicode", "\x00", "```python\nf()\n```", "-1", "1e999"]


def _keys(value, out: set) -> set:
    if isinstance(value, dict):
        out.update(value)
        for v in value.values():
            _keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _keys(v, out)
    return out


KEYS = sorted(_keys(SEEDS, set()))
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12)
           | st.sampled_from(HOSTILE))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4), max_leaves=12)


def _paths(value, path=()):
    """Every (path to a container, key) in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield path, i
            yield from _paths(v, path + (i,))


def _at(value, path):
    for k in path:
        value = value[k]
    return value


@st.composite
def mutated(draw, fmt: str):
    """The seed of `fmt` with 1-4 random replacements, deletions, stringifications or hostile strings."""
    value = seed(fmt)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(value))
        if not paths:
            return draw(JSON)
        path, key = draw(st.sampled_from(paths))
        container = _at(value, path)
        action = draw(st.sampled_from(["replace", "delete", "stringify", "hostile"]))
        if action == "delete":
            del container[key]
        elif action == "stringify":
            container[key] = json.dumps(container[key])
        else:
            container[key] = draw(JSON) if action == "replace" else draw(st.sampled_from(HOSTILE))
    return value


def _damage(raw: bytes, kind: str, at: int) -> bytes:
    at = at % (len(raw) + 1)
    if kind == "truncate":
        return raw[:at]
    if kind == "utf-16":
        return raw.decode("utf-8").encode("utf-16")
    if kind == "stray bytes":
        return raw[:at] + b"\xff\xfe\xc3" + raw[at:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    if kind == "surrogate":
        quote = raw.find(b'"', at)
        return raw if quote < 0 else raw[:quote + 1] + b"\\udc80" + raw[quote + 1:]
    if kind == "deep":
        return raw[:at] + b"[" * 100_000 + b"]" * 100_000 + raw[at:]
    if kind == "jsonl garbage":
        return raw + b'\n{"broken": \n\n[1, 2]\n'
    return raw


def _main_file(fmt: str, root: Path, path: str) -> Path:
    if fmt == "bfcl":
        return root / "BFCL_v3_simple.json"
    return Path(path) if Path(path).is_file() else next(Path(path).glob("*.json"))


def check_load(fmt: str, path: str, options: dict) -> None:
    """The property: conversations that serialise, round-trip and render, or one one-line DataError."""
    for on_error in ("skip", "raise"):
        report = LoadReport(fmt, path)
        try:
            convs = list(load_source(fmt, path, on_error=on_error, report=report, **options))
        except DataError as e:
            assert "\n" not in str(e), str(e)
            continue
        assert convs and report.loaded == len(convs)
        for conv in convs:
            assert Conversation.from_json(conv.to_json().encode("utf-8").decode("utf-8")) == conv
            PaperFormat().render(conv, add_generation_prompt=True)


DAMAGE = ["none", "none", "truncate", "utf-16", "stray bytes", "bom", "surrogate", "deep", "jsonl garbage"]


@settings(max_examples=EXAMPLES * len(FORMATS), deadline=5000, derandomize=not os.environ.get("FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), fmt=st.sampled_from(FORMATS), damage=st.sampled_from(DAMAGE), at=st.integers(0, 10**6),
       many=st.booleans())
def test_any_file_loads_or_fails_cleanly(data, fmt, damage, at, many):
    items = [data.draw(mutated(fmt))] + ([seed(fmt)] if many else [])
    if fmt == "bfcl" and many:
        items[1]["question"]["id"] = items[1]["answer"]["id"] = "simple_1"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, options = write(fmt, root, items, jsonl=fmt in ("conversations", "openai") and many)
        main = _main_file(fmt, root, path)
        main.write_bytes(_damage(main.read_bytes(), damage, at))
        check_load(fmt, path, options)
