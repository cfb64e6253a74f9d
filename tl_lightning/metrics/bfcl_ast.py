"""BFCL's AST checker for Python categories (`eval_checker/ast_eval/ast_checker.py` of `bfcl-eval==2025.6.8`,
Apache-2.0), re-implemented; its decoder is `bfcl_decoder.py`. `tests/metrics/test_bfcl_ast.py` runs BFCL's own
decoder and checker beside them on every v3 Python item.

What BFCL does, and so do we:
  * Checking: one call for `simple`, the first gold function for `multiple`, order-free matching for `parallel`.
    The gold lists acceptable values per parameter ("" = may be omitted); a parameter the schema requires must be
    present even when its alternatives allow "". Types are strict (`type(v) == T`: "10" is not an integer and True
    is not an integer) except that an int is accepted for a float, and a value of the gold's own type is read as a
    "variable". Strings compare after removing spaces and `,./-_*^`, lower-casing, and `'` → `"`; list items too.
    Dict values are checked key by key against per-key alternative lists.
  * Where BFCL's checker itself raises on an item (data defects, e.g. an integer alternative where a list was
    declared), the verdict here is invalid with `error_type` "checker_raises".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PY_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list,
            "dict": dict, "any": str}
NESTED_TYPES = ("array", "tuple")


class _CheckerRaises(Exception):
    """BFCL's checker would raise here (a KeyError / TypeError on malformed gold or schema)."""


@dataclass(frozen=True)
class Verdict:
    """`valid` and BFCL's `error_type`; `param` names the parameter an unexpected-parameter error is about;
    `attempts` holds the per-call verdicts that a parallel `cannot_find_match` tried."""

    valid: bool
    error_type: str = ""
    param: Any = None
    attempts: tuple["Verdict", ...] = field(default=(), repr=False)


VALID = Verdict(True)


# ------------------------------------------------------------------------------------------------------ checking
def check(functions: list | dict, decoded: list[dict], ground_truth: list[dict], category: str) -> Verdict:
    """BFCL's `ast_checker` for Python (underscore_to_dot off, as for prompting models)."""
    try:
        if "parallel" in category:
            return _parallel(functions, decoded, ground_truth)
        if "multiple" in category:
            if len(decoded) != len(ground_truth):
                return Verdict(False, "multiple_function_checker:wrong_count")
            return _simple(_description(functions, next(iter(ground_truth[0]))), decoded[0], ground_truth[0])
        if len(decoded) != 1:
            return Verdict(False, "simple_function_checker:wrong_count")
        return _simple(functions[0], decoded[0], ground_truth[0])
    except (_CheckerRaises, KeyError, TypeError, AttributeError, IndexError, StopIteration) as e:
        return Verdict(False, "checker_raises", param=f"{type(e).__name__}: {e}")


def _description(functions: list | dict, name: str) -> dict:
    if isinstance(functions, list):
        found = next((f for f in functions if f["name"] == name), None)
        if found is None:
            raise _CheckerRaises(f"gold function {name!r} is not offered")
        return found
    return functions


def _parallel(functions: list, decoded: list[dict], ground_truth: list[dict]) -> Verdict:
    if len(decoded) != len(ground_truth):
        return Verdict(False, "parallel_function_checker_no_order:wrong_count")
    matched: list[int] = []
    result = VALID
    for answer in ground_truth:
        description = _description(functions, next(iter(answer)))
        attempts = []
        for index, call in enumerate(decoded):
            if index in matched:
                continue
            result = _simple(description, call, answer)
            if result.valid:
                matched.append(index)
                break
            attempts.append(result)
        if not result.valid:
            return Verdict(False, "parallel_function_checker_no_order:cannot_find_match", attempts=tuple(attempts))
    return VALID


def _simple(description: dict, call: dict, answer: dict) -> Verdict:
    alternatives = next(iter(answer.values()))
    name, properties = description["name"], description["parameters"]["properties"]
    required = description["parameters"]["required"]
    if name not in call:
        return Verdict(False, "simple_function_checker:wrong_func_name")
    params = call[name]
    for p in required:
        if p not in params:
            return Verdict(False, "simple_function_checker:missing_required", p)
    for p, value in params.items():
        if p not in properties or p not in alternatives:
            return Verdict(False, "simple_function_checker:unexpected_param", p)
        verdict = _check_value(p, value, alternatives[p], properties[p])
        if not verdict.valid:
            return verdict
    for p, alts in alternatives.items():
        if p not in params and "" not in alts:
            return Verdict(False, "simple_function_checker:missing_optional", p)
    return VALID


def _check_value(param: str, value: Any, alts: list, spec: dict) -> Verdict:
    declared = spec["type"]
    expected = PY_TYPES[declared]
    nested = PY_TYPES[spec["items"]["type"]] if declared in NESTED_TYPES else None
    if declared == "tuple" and type(value) is tuple:
        value = list(value)
    if declared == "float" and type(value) is int:  # BFCL allows Python's int -> float
        value = float(value)
    valid, is_variable, error = _type_check(value, alts, expected, nested)
    if not valid:
        return Verdict(False, error, param)
    if not is_variable:
        if expected is dict:
            return _dict_check(value, alts)
        if expected is list and nested is dict:
            return _list_of_dicts_check(value, alts)
        if expected is str:
            ok = standardize(value) in [standardize(a) for a in alts if type(a) is str]
            return VALID if ok else Verdict(False, "value_error:string", param)
        if expected is list:
            return VALID if _standardized(value) in [_standardized(a) for a in alts] else \
                Verdict(False, "value_error:list/tuple", param)
    return VALID if value in alts else Verdict(False, "value_error:others", param)


def _answer_type(alts: list) -> type | None:
    return next((type(a) for a in alts if a != ""), None)


def _type_check(value: Any, alts: list, expected: type, nested: type | None) -> tuple[bool, bool, str]:
    """BFCL's `type_checker`: (valid, is_variable, error_type). Nested types are checked one level deep."""
    answer_type = _answer_type(alts)
    is_variable = answer_type is not None and answer_type != expected
    valid, error = True, "type_error:simple"
    if type(value) is expected:
        if nested is None:
            return True, is_variable, ""
        for alt in alts:  # each item must fit one alternative; a non-list alternative ("") lets everything pass
            if type(alt) is not list or all(_type_check(v, alt, nested, None)[0] for v in value):
                return True, is_variable, ""
        valid, error = False, "type_error:nested"
    if answer_type is not None and type(value) is answer_type:
        return valid, True, error
    return False, is_variable, "type_error:simple"


def standardize(s: str) -> str:
    """BFCL's string normalisation: drop spaces and `,./-_*^`, lower-case, `'` → `"`."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def _standardized(items: Any) -> list:
    """BFCL's list normalisation, indexing as BFCL does (a string alternative is read character by character)."""
    out = []
    for j in range(len(items)):
        x = items[j]
        out.append(standardize(x) if type(x) is str else x)
    return out


def _dict_check(value: dict, alts: list) -> Verdict:
    """BFCL's `dict_checker`: every key of the value allowed with an allowed value, every required key present."""
    result = Verdict(False, "dict_checker:unclear")
    for i in range(len(alts)):
        alt = alts[i]
        if alt == "":
            continue
        result, ok = Verdict(False, "dict_checker:unclear"), True
        for key, v in value.items():
            if key not in alt:
                result, ok = Verdict(False, "value_error:dict_key", key), False
                break
            if (standardize(v) if type(v) is str else v) not in _standardized(alt[key]):
                result, ok = Verdict(False, "value_error:dict_value", key), False
                break
        for key, allowed in alt.items():  # BFCL runs this loop even after a failure above
            if key not in value and "" not in allowed:
                result, ok = Verdict(False, "value_error:dict_key", key), False
                break
        if ok:
            return VALID
    return result


def _list_of_dicts_check(value: list, alts: list) -> Verdict:
    """BFCL's `list_dict_checker`: same length as an alternative, each dict valid against its position."""
    result = Verdict(False, "list_dict_checker:unclear")
    for i in range(len(alts)):
        alt = alts[i]
        if len(value) != len(alt):
            result = Verdict(False, "value_error:list_dict_count")
            continue
        ok = True
        for j in range(len(value)):
            result = _dict_check(value[j], [alt[j]])
            if not result.valid:
                ok = False
                break
        if ok:
            return VALID
    return result
