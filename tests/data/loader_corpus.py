"""Valid seed items for every loader format and a writer that puts an item (or raw bytes) where its loader reads it;
shared by the bad-input corpus (test_loader_hardening.py) and the fuzz test (test_loader_fuzz.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tl_lightning.data.loaders import LoadReport, load_source

TOOL = {"name": "get_weather", "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City."},
                                                        "days": {"type": "integer", "description": "Days."}},
                       "required": ["city"]}}
FINISH = {"name": "finish", "description": "Finish.", "parameters": {"type": "object", "properties": {
    "answer": {"type": "string", "description": "Answer."}}, "required": ["answer"]}}
ASK = {"name": "ask_to_user", "description": "Ask.", "parameters": {"type": "object", "properties": {
    "question": {"type": "string", "description": "Question."}}, "required": ["question"]}}
REACT_PROMPT = "You are an expert.\nTask description: tools:\n{tools}\n\nLet's Begin!"


def _react(name: str, args: dict) -> str:
    return f"Thought:\nAction: {name}\nAction Input: {json.dumps(args)}"


SEEDS: dict[str, Any] = {
    "conversations": {"id": "c1", "conversations": [
        {"from": "system", "value": json.dumps([TOOL, FINISH])}, {"from": "user", "value": "Weather in Paris?"},
        {"from": "assistant", "value": 'get_weather\n{"city": "Paris"}'}, {"from": "function", "value": "sunny"},
        {"from": "assistant", "value": "finish(answer='sunny')"}]},
    "openai": {"id": "o1", "tools": [{"type": "function", "function": TOOL}], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."}]},
    "rotbench": {"id": "Turn 1: weather", "scenario": "RS", "conversations": [
        {"from": "system", "value": REACT_PROMPT.format(tools=json.dumps([TOOL, ASK, FINISH]))},
        {"from": "user", "value": "Weather in Paris?\nBegin!\n"},
        {"from": "assistant", "value": [_react("get_weather", {"city": "Paris"}),
                                        _react("get_weather", {"city": "Paris", "days": "None"})]}]},
    "toolalpaca": {"Name": "Weather", "Category": "Weather", "Documentation": json.dumps(
        {"paths": {"/forecast": {"get": {"operationId": "forecast_get", "parameters": [{"name": "city"}]}}}}),
        "Function_Description": {"get_weather": 'Weather.\nParameters: {"city": "Required. string. City."}'
                                                "\nOutput: text"},
        "Instructions": ["Weather in Paris?"],
        "Golden_Answers": [[{"Action": "get_weather", "Action_Input": '{"city": "Paris"}'}]]},
    "tooleyes": {"scenario": "RS", "path": "ToolEyes/Tool_Library/Weather/Forecast", "conversations": [
        {"from": "system", "value": REACT_PROMPT.format(tools=json.dumps([TOOL, ASK, FINISH]))},
        {"from": "user", "value": "Weather in Paris?"}]},
    "bfcl": {"question": {"id": "simple_0", "question": [[{"role": "user", "content": "Weather in Paris?"}]],
                          "function": [{**TOOL, "parameters": {**TOOL["parameters"], "type": "dict"}}]},
             "answer": {"id": "simple_0", "ground_truth": [{"get_weather": {"city": ["Paris"], "days": ["", 1]}}]}},
    "toolbench": {"answer_generation": {"function": [TOOL, FINISH], "train_messages": [[
        {"role": "system", "content": "You are AutoGPT."}, {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "function_call": {"name": "get_weather",
                                                               "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "", "function_call": {"name": "finish",
                                                               "arguments": '{"answer": "sunny"}'}}]]}},
}
FORMATS = tuple(SEEDS)
JSONL_FORMATS = ("conversations", "openai", "bfcl")
"""Formats whose files may be JSON Lines (a bad line is a counted skip there)."""


def seed(fmt: str) -> Any:
    return copy.deepcopy(SEEDS[fmt])


def write(fmt: str, root: Path, items: list | None = None, raw: bytes | None = None, jsonl: bool = False
          ) -> tuple[str, dict]:
    """Write items (or raw file bytes) where `fmt`'s loader reads them; returns (path, loader options).

    Default: the format's seed. BFCL items are {"question": ..., "answer": ...} (question and possible-answer
    JSONL); `raw` replaces the question file. ToolBench: one file per item in a folder. Others: a JSON list, or
    JSON Lines with `jsonl`.
    """
    root.mkdir(parents=True, exist_ok=True)
    items = [seed(fmt)] if items is None else items
    if fmt == "bfcl":
        (root / "possible_answer").mkdir(exist_ok=True)
        pairs = [x if isinstance(x, dict) else {"question": x} for x in items]
        question = raw if raw is not None else b"\n".join(_dumps(x.get("question")) for x in pairs)
        (root / "BFCL_v3_simple.json").write_bytes(question)
        answers = b"\n".join(_dumps(x["answer"]) for x in pairs if "answer" in x)
        (root / "possible_answer" / "BFCL_v3_simple.json").write_bytes(answers or _dumps(SEEDS["bfcl"]["answer"]))
        return "simple", {"data_dir": str(root)}
    if fmt == "toolbench" and raw is None:
        folder = root / "answers"
        folder.mkdir(exist_ok=True)
        for i, item in enumerate(items):
            (folder / f"{i}.json").write_bytes(_dumps(item))
        return str(folder), {}
    path = root / f"data.{'jsonl' if jsonl else 'json'}"
    if raw is not None:
        path.write_bytes(raw)
    else:
        body = b"\n".join(map(_dumps, items)) if jsonl else b"[" + b", ".join(map(_dumps, items)) + b"]"
        path.write_bytes(body)
    return str(path), {}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode("utf-8")


def load(fmt: str, path: str, options: dict, on_error: str = "skip") -> tuple[list, LoadReport]:
    report = LoadReport(fmt, path)
    return list(load_source(fmt, path, on_error=on_error, report=report, **options)), report
