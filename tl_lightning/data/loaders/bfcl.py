"""BFCL v3/v4 single-turn loader (../shared/docs/data.md §1): question JSONL + `possible_answer` JSONL joined by id,
from a folder of BFCL files or from the installed `bfcl-eval` package."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders.base import (
    ItemError,
    LoadReport,
    OnError,
    check_gold_arguments,
    check_gold_offered,
    check_length,
    convert_items,
    parse_tools,
    read_json_or_jsonl,
    text_content,
)
from tl_lightning.data.loaders.conversations import BFCL_STYLE, _role_content
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.schema import BfclGold, Conversation, Message, ToolCall

BFCL_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance", "java", "javascript",
                   "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
                   "exec_simple", "exec_multiple", "exec_parallel", "exec_parallel_multiple")
OFFICIAL_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance", "live_simple",
                       "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance")
"""Categories BFCL scores with its Python AST checker (or, for irrelevance, by "no call"): the `official` scoring
mode reproduces them. Exec categories are scored by executing calls and java / javascript by type converters;
those use the lenient mode."""


def bfcl_data_dir(data_dir: str | Path | None = None) -> Path:
    """The BFCL data directory: the given one, or the one inside an installed `bfcl-eval` package."""
    if data_dir is not None:
        p = Path(data_dir)
        if not p.is_dir():
            raise DataError(f"BFCL data directory not found: {p}")
        return p
    try:
        import importlib.resources as ir
        import importlib.util

        if importlib.util.find_spec("bfcl_eval") is None:
            raise ModuleNotFoundError
        return Path(str(ir.files("bfcl_eval") / "data"))
    except ModuleNotFoundError:
        raise DataError("no BFCL data: pass data_dir (a folder with BFCL_v3_*.json files) or "
                        "`pip install --no-deps bfcl-eval==2025.6.8`") from None


def bfcl_files(category: str, data_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """(question file, possible-answer file or None) for a category; the newest BFCL version present wins."""
    if category not in BFCL_CATEGORIES:
        raise DataError(f"unknown BFCL category {category!r}; choose from {', '.join(BFCL_CATEGORIES)}")
    root = bfcl_data_dir(data_dir)
    names = [category, "simple_python"] if category == "simple" else [category]
    for sub_q, sub_a in (("", "possible_answer"), ("unused_datasets/question", "unused_datasets/possible_answer")):
        for name in names:
            # exact match: a glob "BFCL_v*_multiple.json" would also catch BFCL_v3_parallel_multiple.json
            pattern = re.compile(rf"BFCL_v(\d+)_{re.escape(name)}\.json")
            found = sorted((p for p in (root / sub_q).glob("BFCL_v*.json") if pattern.fullmatch(p.name)),
                           key=lambda p: int(pattern.fullmatch(p.name).group(1)), reverse=True)
            if found:
                answer = root / sub_a / found[0].name
                return found[0], answer if answer.is_file() else None
    raise DataError(f"BFCL category {category!r}: no BFCL_v*_{category}.json under {root}")


def _bfcl_canonical(ground_truth: Any) -> tuple[ToolCall, ...]:
    """One canonical answer from BFCL's per-parameter alternatives: the first non-empty alternative of each
    parameter ("" marks an optional parameter that may be omitted). The full alternatives stay in
    `BfclGold.possible_answer`.

    Raises:
        ItemError: the possible answer is not a list of `{name: {param: [alternatives]}}` entries.
    """
    shape_error = ItemError("possible answer is not a list of {function: {parameter: [alternatives]}}")
    if not isinstance(ground_truth, list) or not ground_truth:
        raise shape_error
    calls = []
    for entry in ground_truth:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise shape_error
        (fname, params), = entry.items()
        if not isinstance(params, dict) or not all(isinstance(a, list) for a in params.values()):
            raise shape_error
        args = {}
        for pname, alternatives in params.items():
            if any(a != "" for a in alternatives):  # else: may be omitted (or no value fits): leave it out
                args[pname] = _first_value(next(a for a in alternatives if a != ""))
        calls.append(ToolCall(fname, args))
    return tuple(calls)


def _first_value(value: Any) -> Any:
    """A dict answer (alone or in a list) lists alternatives per key: its value takes the first of each."""
    if isinstance(value, dict):
        return {k: _first_value(next((a for a in alts if a != ""), None)) if isinstance(alts, list) else alts
                for k, alts in value.items() if not isinstance(alts, list) or any(a != "" for a in alts)}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_first_value(v) for v in value]
    return value


def load_bfcl(category: str, data_dir: str | Path | None = None, on_error: OnError = "skip",
              max_chars: int | None = None, report: LoadReport | None = None) -> Iterator[Conversation]:
    """A BFCL single-turn category: question JSONL + `possible_answer` JSONL joined by id.

    Gold: AST categories → one canonical answer (`BfclGold.possible_answer` keeps every alternative); exec
    categories → the parsed gold call strings; irrelevance → one acceptable answer with no call.
    """
    qfile, afile = bfcl_files(category, data_dir)
    report = report or LoadReport(f"bfcl/{category}", str(qfile))
    answers = _possible_answers(afile, report, on_error) if afile is not None else {}
    seen: set = set()

    def convert(where: str, item: Any):
        turns = item["question"]
        if turns and isinstance(turns[0], list):  # [[messages of turn 1], [turn 2], ...]
            if len(turns) > 1:  # single-turn loader: later turns would be dropped
                raise ItemError("question with more than one turn", detail=f"{len(turns)} turns")
            turns = turns[0]
        if not turns:
            raise ItemError("empty question")
        if item["id"] in seen:  # records and scores are keyed by id
            raise ItemError("duplicate id", detail=repr(str(item["id"])[:60]))
        messages = []
        for m in turns:
            role, content = _role_content(m, BFCL_STYLE)
            messages.append(Message(role, text_content(content)))
        tools = parse_tools(item["function"])
        gt = answers.get(item["id"])
        possible_answer = None
        if "irrelevance" in category:
            gold: tuple = ((),)
        elif gt is None:
            raise ItemError("no possible answer for this id")
        elif gt is _AMBIGUOUS:
            raise ItemError("two possible answers for this id")
        elif isinstance(gt, list) and gt and isinstance(gt[0], str):
            parsed = [parse_calls(s) for s in gt]
            if not all(p.ok for p in parsed):
                raise ItemError("exec gold call string does not parse")
            gold = (tuple(c for p in parsed for c in p.calls),)
        else:
            gold = (_bfcl_canonical(gt),)
            possible_answer = tuple(gt)
        check_gold_offered(gold, tools)
        check_gold_arguments(gold, tools)
        seen.add(item["id"])
        # the raw schemas: BFCL's checker reads types our ToolSpec folds together (float vs integer, tuple, items)
        official = BfclGold(category, tuple(item["function"]), possible_answer)
        yield check_length(Conversation(str(item["id"]), tools, tuple(messages), gold, "bfcl", {"category": category},
                                        benchmark_gold=official), max_chars)

    yield from convert_items(read_json_or_jsonl(qfile, report, on_error), convert, report, on_error, qfile)


_AMBIGUOUS = object()
"""The answer of an id that has two possible-answer lines (its question is skipped: which one is gold?)."""


def _possible_answers(path: Path, report: LoadReport, on_error: OnError) -> dict[str, Any]:
    """id → ground truth; a line without both is skipped and counted (or a `DataError` under "raise")."""
    answers = {}
    for where, a in read_json_or_jsonl(path, report, on_error):
        if isinstance(a, dict) and isinstance(a.get("id"), str) and "ground_truth" in a:
            answers[a["id"]] = _AMBIGUOUS if a["id"] in answers else a["ground_truth"]
        elif on_error == "raise":
            raise DataError(f"{path}: {where}: not an object with 'id' and 'ground_truth'")
        else:
            report.skip(f"possible answer {where}", "possible answer without id / ground_truth")
    return answers
