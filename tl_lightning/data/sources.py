"""`DataSource`: where a datamodule's conversations come from (built-in ToolWorld, or a file in any loader format,
read through an HF `datasets` cache)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders import LoadReport, as_hf_dataset
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.format.schema import Conversation


@dataclass
class DataSource:
    """Where conversations come from."""

    format: Literal["toolworld", "conversations", "openai", "toolbench", "rotbench", "toolalpaca",
                    "tooleyes"] = "toolworld"
    """"toolworld" (generated) or a file format of tl_lightning.data.loaders."""
    path: str | None = None
    """File or directory for file formats."""
    split: str = "train"
    """ToolWorld split name (splits with different names are disjoint)."""
    size: int = 1000
    """ToolWorld: number of conversations."""
    seed: int = 0
    """ToolWorld seed."""
    error_rate: float = 0.17
    """ToolWorld: share of calls preceded by an erroneous attempt."""
    on_error: Literal["raise", "skip"] = "skip"
    """Files: stop at the first bad item, or count and skip it."""
    limit: int | None = None
    """Use at most this many conversations."""

    def check_path(self) -> None:
        """A file source's path exists (one `DataError` line; the CLI checks before the trainer starts)."""
        if self.format == "toolworld":
            return
        if not self.path:
            raise DataError(f"data source format {self.format!r} needs a path")
        if not Path(self.path).expanduser().exists():
            raise DataError(f"data path not found: {self.path} (check the path in your config)")

    def load(self, cache_dir: str | None = None) -> tuple[list[Conversation], LoadReport]:
        if self.format == "toolworld":
            convs = ToolWorld(seed=self.seed, error_rate=self.error_rate).split(self.split, self.size)
            report = LoadReport("toolworld", self.split, loaded=len(convs))
        else:
            if not self.path:
                raise DataError(f"data source format {self.format!r} needs a path")
            report = LoadReport(self.format, self.path)  # the loader's counts: data_stats.json shows the skips
            ds = as_hf_dataset(self.format, self.path, on_error=self.on_error, cache_dir=cache_dir, report=report)
            convs = [Conversation.from_json(s) for s in ds["conversation"]]
        return convs[: self.limit] if self.limit else convs, report
