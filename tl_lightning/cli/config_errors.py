"""Config and command-line mistakes in one line: the key, what was wrong, and the closest valid key.

jsonargparse reports a bad key inside a `class_path` component as a nested "Does not validate against any of the
Union subtypes" tree (20-60 lines after a usage dump). `OneLineErrorParser` turns that tree into a `UserError`:

    unknown config key 'model.init_args.policy.lora.rr': did you mean 'r'? (LoraSettings accepts: alpha, dropout, ...)
    invalid value for 'trainer.max_epochs': expected int, got 'abc'
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import typing

from lightning.pytorch.cli import LightningArgumentParser

from tl_lightning.core.errors import UserError

_PARSER_KEY = re.compile(r'^(\s*)(?:- )?Parser key "([^"]+)":\s*(.*)$')
_CLASS_PATH = re.compile(r"""class_path[ =]'([\w.]+)'""")
_UNKNOWN = (re.compile(r"Option '([^']+)' is not accepted"),
            re.compile(r"Group '([^']+)' does not accept option '([^']+)'"),
            re.compile(r"does not accept option '([^']+)'"),
            re.compile(r"unrecognized arguments: (?:\w+ )?--?([\w.]+)"))
_NOT_ERRORS = ("Does not validate against any", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>",
               "- Expected a <class 'NoneType'>", "Problem with given class_path")


class OneLineErrorParser(LightningArgumentParser):
    """LightningCLI's parser, raising a one-line `UserError` where it would print usage and exit.

    Parsers that jsonargparse runs internally with `exit_on_error=False` (to try each type of a union) keep raising
    `ArgumentError`, which jsonargparse catches itself."""

    def error(self, message: str, ex: Exception | None = None) -> typing.NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        raise UserError(one_line(message, parser)) from None


def one_line(message: str, parser=None) -> str:
    """The jsonargparse `message` as one line naming the key (see the module docstring)."""
    lines = [x for x in message.splitlines() if x.strip()]
    path: list[tuple[int, str]] = []  # (indent, key part) of the enclosing "Parser key" / class_path lines
    owner = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        path = [(i, k) for i, k in path if i < indent]
        m = _PARSER_KEY.match(line)
        if m:
            path.append((indent, m.group(2)))
            line = " " * indent + m.group(3)  # "Parser key "config": File does not exist: ..." holds its error
        cls_match = _CLASS_PATH.search(line)
        if cls_match:
            owner = _import(cls_match.group(1))
            if "Problem with given class_path" in line:  # below: its fields (dataclass) or init_args, or the
                # class_path itself when the class cannot be imported
                part = "class_path" if owner is None else "" if dataclasses.is_dataclass(owner) else "init_args"
                path.append((indent, part))
                continue
        prefix = ".".join(k for _, k in path if k)
        unknown = _unknown_key(line)
        if unknown:
            if cls_match and "init_args" not in unknown and not dataclasses.is_dataclass(owner):
                unknown = "init_args." + unknown  # a callable component: "Option 'lrr' ... Namespace(class_path=...)"
            return _unknown_message(f"{prefix}.{unknown}" if prefix else unknown, unknown, owner, parser)
        detail = line.strip().removeprefix("- ")
        if prefix and detail and not detail.startswith(_NOT_ERRORS):
            return _invalid_message(prefix, detail, lines)
    return " ".join(message.split())  # no key to name: the message as it is, on one line


def _unknown_key(line: str) -> str | None:
    for pattern in _UNKNOWN:
        m = pattern.search(line)
        if m:
            return ".".join(m.groups())
    return None


def _unknown_message(full_key: str, relative: str, owner, parser) -> str:
    """`relative` is the key below `owner` (a class or dataclass), or below the top level when there is none."""
    parts = relative.removeprefix("init_args.").split(".")
    if owner is None:  # a top-level key (trainer.*, seed_everything, ...): compare whole dotted keys
        keys = sorted(parser.get_defaults().keys()) if parser is not None else []
        best = difflib.get_close_matches(full_key, keys, n=1, cutoff=0.6)
        hint = f": did you mean '{best[0]}'?" if best else ""
        return f"unknown config key '{full_key}'{hint} (`--help` lists the valid keys)"
    for part in parts[:-1]:  # e.g. "train.sizee" under ToolSFTDataModule: the key `sizee` of DataSource
        owner = _field_type(owner, part) or owner
    names = _field_names(owner)
    best = difflib.get_close_matches(parts[-1], names, n=1, cutoff=0.5)
    hint = f": did you mean '{best[0]}'?" if best else ""
    return f"unknown config key '{full_key}'{hint} ({owner.__name__} accepts: {', '.join(names)})"


def _invalid_message(key: str, detail: str, lines: list[str]) -> str:
    given = next((x.split("Given value:", 1)[1].strip() for x in lines if "Given value:" in x), None)
    nested = re.search(r"val='([^']*)'", given or "")
    given = nested.group(1) if nested else given
    detail = re.sub(r"Expected a <class '(\w+)'>", r"expected \1", detail)
    detail = re.sub(r"Expected a typing\.Literal\[(.*)\]", r"expected one of \1", detail)
    detail = re.sub(r"Expected a (?:dot import path string: |path but )(\S+).*",
                    r"no class named '\1' (give a class name this project imports, e.g. SFTSystem, or a full class "
                    r"path)", detail)
    if given is not None and "Got value" not in detail and given not in detail:
        detail += f", got '{given}'"
    return f"invalid value for '{key}': {detail}"


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _field_names(owner) -> list[str]:
    if dataclasses.is_dataclass(owner):
        return [f.name for f in dataclasses.fields(owner)]
    try:
        params = inspect.signature(owner.__init__).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name not in ("self", "params") and p.kind not in (p.VAR_POSITIONAL,
                                                                                          p.VAR_KEYWORD)]


def _field_type(owner, name: str):
    """The class of field / init argument `name` of `owner` (Optional and unions unwrapped), or None."""
    try:
        hints = typing.get_type_hints(owner if dataclasses.is_dataclass(owner) else owner.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no deeper suggestion
        return None
    hint = hints.get(name)
    return next((t for t in (typing.get_args(hint) or (hint,)) if isinstance(t, type) and t is not type(None)), None)
