"""`BenchmarkDataModule`: evaluation sets → step prompts with gold, grouped by benchmark (and RoTBench noise level).

Used by `python main.py test --config configs/eval/<benchmark>.yaml`. Paths are relative to `root` (default
`data/`; see the README for where to get each set). Batches are `PromptBatch`es (prompt tokens, the step prompts
with their gold, and each prompt's benchmark group), so the system only generates and scores.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from torch.utils.data import DataLoader

from tl_lightning.core.errors import DataError, UserError, as_dataclass
from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.loaders import LoadReport, load_source
from tl_lightning.data.loaders.bfcl import OFFICIAL_CATEGORIES
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.format.schema import Conversation
from tl_lightning.rewards.taxonomy import ScoringMode

log = logging.getLogger(__name__)


@dataclass
class BenchmarkSource:
    """One evaluation file (or BFCL category)."""

    name: str
    """Group name in the report, e.g. "rotbench/First_Turn/clean"."""
    format: Literal["rotbench", "toolalpaca", "tooleyes", "bfcl", "conversations", "openai", "toolworld"]
    """Loader format (see README, Data)."""
    path: str = ""
    """File under `root`; for bfcl the category name; for toolworld the split name."""
    data_dir: str | None = None
    """bfcl: folder with BFCL_v*_*.json files under `root` (default: the installed bfcl-eval package)."""
    tool_library: str | None = None
    """tooleyes raw file: the Tool_Library folder under `root`."""
    limit: int | None = None
    """Evaluate at most this many items (smoke runs)."""
    scoring: ScoringMode | None = None
    """How responses are scored: "official" reproduces the benchmark's own scorer item by item (RoTBench
    evaluate.py; BFCL ast_checker for its Python AST and irrelevance categories); "lenient" is our own reading
    (docs/taxonomy.md). Default: official where the benchmark has one, else lenient."""


def official_available(source: BenchmarkSource) -> bool:
    """Whether the benchmark's own scorer is reproduced for this source (see `BenchmarkSource.scoring`)."""
    return source.format == "rotbench" or source.format == "bfcl" and source.path in OFFICIAL_CATEGORIES


def scoring_mode(source: BenchmarkSource) -> ScoringMode:
    """The source's scoring mode, its default resolved; "official" where none is reproduced is a `UserError`."""
    if source.scoring is None:
        return "official" if official_available(source) else "lenient"
    if source.scoring == "official" and not official_available(source):
        raise UserError(f"benchmark {source.name!r}: scoring 'official' is reproduced for rotbench and for bfcl "
                        f"categories {', '.join(OFFICIAL_CATEGORIES)}; use scoring: lenient")
    return source.scoring


def _load(source: BenchmarkSource, root: Path, on_error: str, bfcl_dir: str | None = None) -> list[Conversation]:
    if source.format == "toolworld":
        from tl_lightning.data.toolworld import ToolWorld

        return all_step_prompts(ToolWorld().split(source.path or "test", source.limit or 200))
    report = LoadReport(source.format, source.path)
    options = {}
    if source.format == "bfcl":
        path = source.path
        options["data_dir"] = str(root / source.data_dir) if source.data_dir else bfcl_dir
    else:
        path = root / source.path
        if source.tool_library:
            options["tool_library"] = str(root / source.tool_library)
    convs = list(load_source(source.format, path, on_error=on_error, report=report, **options))
    report.log()
    # Trajectories without gold become per-step prompts; benchmark items with gold (or ToolEyes queries) stay as is.
    convs = [c for conv in convs for c in (all_step_prompts([conv]) if conv.gold is None and source.format in
                                           ("conversations", "openai") else [conv])]
    return convs[: source.limit] if source.limit else convs


class BenchmarkDataModule(ToolDataModule):
    """Evaluation prompts.

    Args:
        tokenizer: tokenizer path or hub id (linked from the model's checkpoint).
        benchmarks: the sets to evaluate.
        root: folder the benchmark paths are relative to.
        prompt_format: "paper" or "chat_template" (as in training).
        batch_size: prompts per generation batch.
        on_error: "skip" (count and log bad items) or "raise".
        limit: evaluate at most this many items of every benchmark (smoke runs; a benchmark's own `limit` wins).
        bfcl_fallback_dir: BFCL data folder (relative to the working directory) for bfcl benchmarks without a
            `data_dir` when the bfcl-eval package is not installed; configs/eval/tiny.yaml points it at
            tests/fixtures/bfcl (a few items per category), so the CPU smoke run covers BFCL either way.
        order: "prompt" (default): batches hold prompts in token order, so that prompts sharing a prefix (RoTBench
            items written against one tool list) meet in a batch and the engine prefills that prefix once
            (`models/prefill_plan.py`); "file": the files' order. Every prediction keeps its item id either way.
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", benchmarks: list[BenchmarkSource] | None = None,
                 root: str = "data", prompt_format: Literal["paper", "chat_template"] = "paper", batch_size: int = 16,
                 on_error: Literal["raise", "skip"] = "skip", limit: int | None = None,
                 bfcl_fallback_dir: str | None = None, order: Literal["prompt", "file"] = "prompt") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.benchmarks = [as_dataclass(BenchmarkSource, b) for b in benchmarks or []]
        for b in self.benchmarks:
            scoring_mode(b)  # an unavailable official scorer is a config error, reported before any loading
        if limit is not None:
            self.benchmarks = [b if b.limit is not None else replace(b, limit=limit) for b in self.benchmarks]
        if not self.benchmarks:
            raise DataError("no benchmarks configured: set data.init_args.benchmarks")
        self.tok = None
        self.items: list[dict] = []

    def setup(self, stage: str | None = None) -> None:
        if self.items:
            return
        root = Path(self.hparams.root)
        bfcl_dir = self._bfcl_dir()
        for b in self.benchmarks:
            convs = _load(b, root, self.hparams.on_error, bfcl_dir)
            # each prompt carries its benchmark's mode: the system scores every prompt by its own benchmark's rules
            self.items += self.prompt_items(convs, b.name, scoring_mode(b))
            log.info("benchmark %s: %d prompts", b.name, len(convs))
        if self.hparams.order == "prompt":
            self.items.sort(key=lambda item: item["input_ids"])

    def _bfcl_dir(self) -> str | None:
        """The fallback BFCL folder when it is needed: bfcl-eval absent and a fallback configured."""
        fallback = self.hparams.bfcl_fallback_dir
        if fallback is None or importlib.util.find_spec("bfcl_eval") is not None or \
                not any(b.format == "bfcl" and not b.data_dir for b in self.benchmarks):
            return None
        log.info("bfcl-eval is not installed: BFCL items come from %s", fallback)
        return fallback

    def check_paths(self) -> None:
        """Every benchmark file (and BFCL folder) exists: one `DataError` line before the trainer starts."""
        root = Path(self.hparams.root)
        for b in self.benchmarks:
            if b.format == "toolworld":
                continue
            if b.format == "bfcl":
                folder = root / b.data_dir if b.data_dir else self._bfcl_dir()
                if folder is None and importlib.util.find_spec("bfcl_eval") is None:
                    raise DataError(f"benchmark {b.name}: no BFCL data: `pip install --no-deps bfcl-eval==2025.6.8`, "
                                    "or set its data_dir (or data.init_args.bfcl_fallback_dir)")
                paths = [Path(folder)] if folder is not None else []
            else:
                paths = [root / b.path] + ([root / b.tool_library] if b.tool_library else [])
            for path in paths:
                if not path.exists():
                    raise DataError(f"benchmark {b.name}: {path} not found (data.init_args.root is {root}; see the "
                                    "README, Data, for where to get each benchmark)")

    def test_dataloader(self) -> DataLoader:
        return self.prompt_loader(self.items, self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
