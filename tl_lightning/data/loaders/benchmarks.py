"""Loaders for the evaluation sets ToolAlpaca and ToolEyes (../shared/docs/data.md §3, §4); BFCL is in bfcl.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders.base import (
    DuplicateKeyError,
    ItemError,
    LoadReport,
    OnError,
    check_gold_arguments,
    check_gold_offered,
    check_length,
    convert_items,
    loads,
    parse_tools,
    read_json,
    read_json_list,
)
from tl_lightning.data.loaders.conversations import REACT_STYLE, _convert_turns
from tl_lightning.format.schema import (
    TOOL_NAME,
    Conversation,
    Message,
    ToolCall,
    ToolParam,
    ToolSpec,
    normalise_type,
    stable_id,
)

# ------------------------------------------------------------------------------------------------- ToolAlpaca
_TA_PARAM = re.compile(r"^\s*(Required|Optional)\.\s*([\w\[\]]*)\.?\s*(.*)$", re.DOTALL | re.IGNORECASE)
_TA_DUP_KEY = re.compile(r'("[^"\\]+")\s*:\s*\1\s*:')  # upstream defect: `"symbols": "symbols": ...`
_TA_PARAMETERS = re.compile(r"(?:^|\n)Parameters:")  # AirportApi_getAirport has no description: text starts here


def _toolalpaca_tool(name: str, text: str) -> ToolSpec:
    """A tool from ToolAlpaca's `Function_Description` text: `desc\\nParameters: {json}\\nOutput: ...`."""
    if not TOOL_NAME.fullmatch(name) or not isinstance(text, str):
        raise ItemError(f"function {name[:60]!r}: not a callable name, or a description that is not text")
    desc, *rest_list = _TA_PARAMETERS.split(text, maxsplit=1)
    rest = rest_list[0] if rest_list else ""
    params_json = rest.split("\nOutput:", 1)[0].strip() or "{}"
    try:
        raw = loads(params_json)
    except ValueError:
        raise ItemError(f"function {name!r}: Parameters is not JSON") from None
    if not isinstance(raw, dict):
        raise ItemError(f"function {name!r}: Parameters is not an object")
    params = []
    for pname, ptext in raw.items():
        m = _TA_PARAM.match(str(ptext))
        required, ptype, pdesc = (m.group(1).lower() == "required", m.group(2), m.group(3)) if m else (False, "",
                                                                                                       str(ptext))
        params.append(ToolParam(pname, normalise_type(ptype), pdesc.strip(), required))
    params.sort(key=lambda p: not p.required)
    return ToolSpec(name, desc.strip(), tuple(params))


def _openapi_operations(paths: dict, prefix: str = "") -> Iterator[tuple[str, str, dict]]:
    """(path, method, operation) of an OpenAPI `paths` object, including upstream-malformed nesting where a path
    object holds further paths (ToolAlpaca's AviationAPI nests /weather/metar etc. under /preferred-routes)."""
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if key.startswith("/"):
                yield from _openapi_operations({key: value})
            elif key in ("get", "post", "put", "delete", "patch") and isinstance(value, dict):
                yield path, key, value


def _openapi_document(documentation: Any) -> dict:
    """An API's `Documentation`: a JSON OpenAPI document (an object), else an item error (it is where tools missing
    from Function_Description are recovered from, and a file whose documents do not parse is not ToolAlpaca's)."""
    try:
        doc = loads(documentation) if isinstance(documentation, str) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ItemError("Documentation is not a JSON OpenAPI document")
    return doc


def _openapi_tools(doc: dict) -> dict[str, ToolSpec]:
    """Tools named as ToolAlpaca names them (`path_with_underscores_method`) from the OpenAPI document."""
    paths = doc.get("paths")
    tools = {}
    for path, method, op in _openapi_operations(paths if isinstance(paths, dict) else {}):
        name = str(op.get("operationId") or f"{path.strip('/').replace('/', '_')}_{method}")
        if not TOOL_NAME.fullmatch(name):
            continue
        params = [ToolParam(str(p.get("name")), normalise_type((p.get("schema") or {}).get("type")),
                            str(p.get("description") or ""), bool(p.get("required")))
                  for p in op.get("parameters") or [] if isinstance(p, dict) and p.get("name")]
        params.sort(key=lambda p: not p.required)
        tools[name] = ToolSpec(name, str(op.get("summary") or op.get("description") or ""), tuple(params))
    return tools


def _toolalpaca_step(step: dict) -> ToolCall:
    if not isinstance(step, dict) or not isinstance(step.get("Action"), str) or not step["Action"]:
        raise ItemError("gold step without an Action")
    raw = step.get("Action_Input")
    if isinstance(raw, dict):
        return ToolCall(step["Action"], raw)
    if not isinstance(raw, str) or not raw.strip():  # an empty input is not a call with no arguments ("{}")
        raise ItemError("gold Action_Input is empty")
    try:
        args = loads(raw, unique_keys=True)
    except DuplicateKeyError as e:
        raise ItemError("duplicate key in call arguments", detail=f"{step['Action'][:60]!r}: {e}") from None
    except ValueError:
        if _TA_DUP_KEY.search(raw):  # upstream `"symbols": "symbols": "EUR"`: not repaired, the gold is a guess then
            raise ItemError("gold Action_Input has a duplicated key", detail=_TA_DUP_KEY.search(raw).group(0)) from None
        raise ItemError("gold Action_Input is not JSON (e.g. template placeholders like ${start date})") from None
    if not isinstance(args, dict):
        raise ItemError("gold Action_Input is not an object")
    return ToolCall(step["Action"], args)


GET_DETAILS = ToolSpec("getDetails", "Ask the user for details that are missing to complete the task.",
                      (ToolParam("Question", "string", "The question to ask the user."),))
"""ToolAlpaca's agent offers this ask-the-user tool with every API (its gold answers call it; the files do not
list it)."""


def _later_step(step: dict, report: LoadReport) -> dict:
    """Later gold steps are not scored by the first-call protocol; an unparseable one is kept raw and counted."""
    try:
        return _toolalpaca_step(step).to_dict()
    except ItemError:
        report.note("unparseable later gold step kept raw")
        return {"name": step.get("Action", ""), "raw_arguments": step.get("Action_Input", "")}


def load_toolalpaca(path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                    report: LoadReport | None = None) -> Iterator[Conversation]:
    """ToolAlpaca `eval_real.json` / `eval_simulated.json`: one conversation per instruction.

    Gold = the first step of `Golden_Answers[i]` (the paper's TS/PI/CF protocol, data.md §4.3); all steps are kept
    in `meta["gold_steps"]`.
    """
    report = report or LoadReport("toolalpaca", str(path))

    def convert(where: str, api: Any):
        documentation = _openapi_document(api.get("Documentation"))
        tools = tuple(_toolalpaca_tool(n, t) for n, t in api["Function_Description"].items())
        if len(api["Instructions"]) != len(api["Golden_Answers"]):  # zip would silently drop the extra ones
            raise ItemError(f"{len(api['Instructions'])} Instructions but {len(api['Golden_Answers'])} Golden_Answers")
        gold_names = {s.get("Action") for steps in api["Golden_Answers"] for s in steps if isinstance(s, dict)}
        missing = gold_names - {t.name for t in tools} - {GET_DETAILS.name}
        if missing:  # Function_Description lacks tools the gold calls: recover them from the OpenAPI document
            recovered = [t for n, t in _openapi_tools(documentation).items() if n in missing]
            tools += tuple(recovered)
            report.note("tool recovered from the OpenAPI document", len(recovered))
        if GET_DETAILS.name not in {t.name for t in tools}:
            tools += (GET_DETAILS,)
        for i, (instr, steps) in enumerate(zip(api["Instructions"], api["Golden_Answers"])):
            try:
                if not steps or not isinstance(steps, list) or not isinstance(instr, str):
                    raise ItemError("no gold steps, or an instruction that is not text")
                first = _toolalpaca_step(steps[0])  # the scored step must parse
                check_gold_offered([[first]], tools)
                check_gold_arguments([[first]], tools)
            except ItemError as e:
                if on_error == "raise":
                    raise
                detail = f" ({e.detail})" if e.detail else ""
                report.skip(f"{where} ({api.get('Name')}) instruction {i}{detail}", str(e))
                continue
            meta = {"api": api.get("Name", ""), "category": api.get("Category", ""),
                    "gold_steps": [first.to_dict()] + [_later_step(s, report) for s in steps[1:]]}
            cid = f"{api.get('Name', where)}/{i}"
            yield check_length(Conversation(cid, tools, (Message("user", instr),), ((first,),), "toolalpaca", meta),
                               max_chars)

    yield from convert_items(read_json_list(path), convert, report, on_error)


# --------------------------------------------------------------------------------------------------- ToolEyes
_ASK_TO_USER = ToolSpec("ask_to_user", "You can ask user for guidance when you think you need more information to "
                        "handle the task, but you should use this tool as less as you can.",
                        (ToolParam("question", "string", "The question you want to ask to user."),))
_FINISH = ToolSpec("finish", "Finish the task and give your answer.",
                   (ToolParam("answer", "string", "Your answer for the task."),))


def load_tool_library(root: str | Path, report: LoadReport | None = None) -> dict[str, tuple[ToolSpec, ...]]:
    """ToolEyes `Tool_Library/<Category>/<Tool>/config_gpt4.json` → {"<Category>/<Tool>": tools}; a group whose
    file fails is counted in `report` under its reason and left out."""
    return _tool_library(root, report or LoadReport("tool_library", str(root)))[0]


def _tool_library(root: str | Path, report: LoadReport) -> tuple[dict[str, tuple[ToolSpec, ...]], dict[str, str]]:
    """(groups, failed group → reason)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"tool library directory not found: {root}")
    groups, failed = {}, {}
    for f in sorted(root.glob("*/*/config_gpt4.json")):
        group = f"{f.parent.parent.name}/{f.parent.name}"
        try:
            groups[group] = parse_tools(read_json(f))
            report.loaded += 1
        except (ItemError, DataError) as e:  # one bad tool file costs its group, counted, not the whole library
            failed[group] = str(e).replace(str(f), "file")
            report.skip(f"{f.relative_to(root)}{f' ({e.detail})' if getattr(e, 'detail', '') else ''}",
                        failed[group])
    return groups, failed


def load_tooleyes(path: str | Path, tool_library: str | Path | None = None, on_error: OnError = "skip",
                  max_chars: int | None = None, report: LoadReport | None = None) -> Iterator[Conversation]:
    """ToolEyes test queries (no gold answers: ToolEyes scores live trajectories).

    Accepts the processed files (`scenario_data_{zero,five}_processed.json`: system prompt with the tool document)
    or the raw file (`scenario_data_raw.json`) together with `tool_library` (the `Tool_Library` directory); the
    library's groups already end with `ask_to_user` and `finish` (they are appended only where missing).
    """
    report = report or LoadReport("tooleyes", str(path))
    library, failed = _tool_library(tool_library, LoadReport("tool_library", str(tool_library))) if tool_library \
        else (None, {})

    def convert(where: str, item: Any):
        meta = {"scenario": item.get("scenario", ""), "group": str(item.get("path", "")).split("Tool_Library/")[-1]}
        if "conversations" in item:
            tools, messages = _convert_turns(item["conversations"], REACT_STYLE)
        elif library is not None:
            if meta["group"] in failed:  # the queries of a group whose tool file failed say why, not "not found"
                raise ItemError(f"tool group unusable: {failed[meta['group']]}", detail=meta["group"])
            if meta["group"] not in library:
                raise ItemError(f"tool group {meta['group']!r} not in the tool library")
            tools = library[meta["group"]]
            tools += tuple(t for t in (_ASK_TO_USER, _FINISH) if t.name not in {x.name for x in tools})
            messages = [Message("user", str(item["query"]))]
        else:
            raise ItemError("raw ToolEyes item needs tool_library= (the Tool_Library directory)")
        cid = str(item.get("id") or stable_id(item.get("query"), meta["group"]))
        yield check_length(Conversation(cid, tools, tuple(messages), None, "tooleyes", meta), max_chars)

    yield from convert_items(read_json_list(path), convert, report, on_error)
