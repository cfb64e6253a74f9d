"""File → canonical `Conversation` loaders, one per source format, and the `load_source` dispatcher.

`load_source(format, path, ...)` is what datamodules and the CLI use; `as_hf_dataset` wraps it in an HF
`datasets.Dataset` cached on disk (keyed by the file's path, size and mtime and the loader arguments), with the
load's report (skip counts) stored beside the cache, so that a cached load reports the same counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders.base import LoadReport, OnError, require_items
from tl_lightning.data.loaders.benchmarks import load_tool_library, load_toolalpaca, load_tooleyes
from tl_lightning.data.loaders.bfcl import load_bfcl
from tl_lightning.data.loaders.conversations import (
    load_conversations,
    load_openai,
    load_rotbench,
    load_toolbench_answer,
)
from tl_lightning.format.schema import Conversation, stable_id

log = logging.getLogger(__name__)

SourceFormat = Literal["conversations", "rotbench", "toolalpaca", "tooleyes", "bfcl", "openai", "toolbench"]
_LOADERS = {"conversations": load_conversations, "rotbench": load_rotbench, "toolalpaca": load_toolalpaca,
            "tooleyes": load_tooleyes, "openai": load_openai, "toolbench": load_toolbench_answer}

__all__ = ["LoadReport", "OnError", "SourceFormat", "load_source", "as_hf_dataset", "load_bfcl", "load_tool_library"]


LOADER_VERSION = 2
"""Part of the dataset cache key: raise it whenever loaders produce different conversations from the same file
(a new skip rule, a new field), so no cache built by older code is served (the file stamp alone cannot tell)."""


def load_source(format: SourceFormat, path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                report: LoadReport | None = None, **options: Any) -> Iterator[Conversation]:
    """Load conversations from `path` in `format`. For `bfcl`, `path` is the category name and `options` may
    give `data_dir`; for `tooleyes`, `options` may give `tool_library`. Paths may be files or, for the
    file-per-item formats, directories (all `*.json` / `*.jsonl` files below, sorted).

    Raises:
        DataError: a missing or unreadable path, an unknown format, or a load that yields no conversation at all
            (an empty file, or every item skipped: the message gives the skip counts).
    """
    report = report if report is not None else LoadReport(str(format), str(path))
    loaded_before = report.loaded
    if format == "bfcl":
        yield from load_bfcl(str(path), on_error=on_error, max_chars=max_chars, report=report, **options)
    elif format not in _LOADERS:
        raise DataError(f"unknown data format {format!r}; choose from {', '.join(list(_LOADERS) + ['bfcl'])}")
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"data path not found: {p} (check the path in your config)")
        files = sorted(x for x in p.rglob("*") if x.suffix in (".json", ".jsonl")) if p.is_dir() else [p]
        for f in files:
            yield from _LOADERS[format](f, on_error=on_error, max_chars=max_chars, report=report, **options)
    require_items(report, loaded_before, f"{format} data {path}")


def as_hf_dataset(format: SourceFormat, path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                  cache_dir: str | None = None, report: LoadReport | None = None, **options: Any):
    """Load into an HF `datasets.Dataset` with one column `conversation` (the canonical JSON), cached on disk.

    The cache key includes the file's size and mtime, so editing the file invalidates it. The load's counts go
    into `report` (if given) and are logged, a warning when items were skipped, whether or not the cache was hit.
    """
    import datasets

    p = Path(str(path))
    if format != "bfcl" and not p.exists():
        raise DataError(f"data path not found: {p} (check the path in your config)")
    stamp = [(str(f), f.stat().st_size,
              f.stat().st_mtime_ns) for f in ([p] if p.is_file() else sorted(p.rglob("*.json*")))] \
        if p.exists() else [str(path)]
    gen_kwargs = {"format": format, "path": str(path), "on_error": on_error, "max_chars": max_chars,
                  "options": options, "stamp": stamp, "loader_version": LOADER_VERSION}
    report_file = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "tl_load_reports" / \
        f"{stable_id(gen_kwargs)}.json"
    try:
        ds = datasets.Dataset.from_generator(_generate, cache_dir=cache_dir,
                                             gen_kwargs={**gen_kwargs, "report_file": str(report_file)})
    except datasets.exceptions.DatasetGenerationError as e:  # a DataError inside the generator: surface it as is
        cause = e.__cause__
        if isinstance(cause, DataError):
            raise cause from None
        raise
    loaded = _stored_report(report_file, str(format), str(path), len(ds))
    loaded.log()
    if report is not None:
        report.merge(loaded)
    return ds


def _generate(format: str, path: str, on_error: OnError, max_chars: int | None, options: dict, stamp: Any,
              loader_version: int, report_file: str):
    report = LoadReport(format, path)
    for conv in load_source(format, path, on_error=on_error, max_chars=max_chars, report=report, **options):
        yield {"conversation": conv.to_json()}
    Path(report_file).parent.mkdir(parents=True, exist_ok=True)
    Path(report_file).write_text(json.dumps(report.to_dict()))


def _stored_report(report_file: Path, format: str, path: str, n: int) -> LoadReport:
    """The report written when the cache was built; a cache older than these reports has only its row count."""
    try:
        return LoadReport.from_dict(format, path, json.loads(report_file.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        report = LoadReport(format, path, loaded=n)
        report.note("skip counts unknown (dataset cache built without a load report)")
        return report
