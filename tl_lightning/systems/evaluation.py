"""`EvalSystem`: batched greedy decoding of benchmark prompts → parse → `classify` → metrics and report files.

    python main.py test --config configs/eval/rotbench.yaml

Outputs (under `output_dir`, default the run's log dir): `predictions/<group>.jsonl` (item id, prompt hash, raw
output, parsed calls, category, gold), `summary.json`, `summary.md` and `error_categories.png`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
import torch

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.core.errors import as_dataclass
from tl_lightning.data.batches import PromptBatch
from tl_lightning.evaluation.predict import Prediction, predict_batch
from tl_lightning.evaluation.report import write_report
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.metrics.scoring import scoring_label
from tl_lightning.metrics.tool_call import SchemaValidityMetrics, ToolCallMetrics
from tl_lightning.models.engine import DecodeLoop, RolloutEngine
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference, prepare_checkpoint

log = logging.getLogger(__name__)


def prediction_record(p: Prediction) -> dict:
    """One line of predictions/<group>.jsonl: item id, prompt hash, raw output, parse, category, gold."""
    conv = p.conversation
    scored = conv.gold is not None
    return {"id": conv.id,
            "prompt_sha1": hashlib.sha1(json.dumps(conv.to_dict(), sort_keys=True).encode()).hexdigest()[:16],
            "output": p.text, "parsed": [c.to_dict() for c in p.parsed.calls] if p.parsed.ok else None,
            "parse_failure": None if p.parsed.ok else p.parsed.failure.reason,
            "category": p.classification.category if scored else None,
            "gold": [[c.to_dict() for c in a] for a in conv.gold] if scored else None}


class EvalSystem(L.LightningModule):
    """Evaluate a (base + optional adapter) model on benchmark prompts. Single-process: run with devices: 1.

    Args:
        policy: what to load; set `adapter` to the trained LoRA directory (e.g. runs/sft/.../hf/final).
        generation: decoding settings (greedy by default).
        output_dir: where to write predictions and the report (default: the run's log dir).
        free_text_tools: tools whose argument content is not compared (RoTBench: finish, ask_to_user).
        engine: the rollout engine that decodes (default `DecodeLoop()`; `HFGenerate` is transformers' generate).
    """

    def __init__(self, policy: ModelSettings = ModelSettings(lora=None),
                 generation: GenerationSettings = GenerationSettings(),
                 output_dir: str | None = None, free_text_tools: list[str] = sorted(FREE_TEXT_TOOLS),
                 engine: RolloutEngine | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["engine"])
        self.engine = engine or DecodeLoop()
        self.policy_settings = as_dataclass(ModelSettings, policy)
        self.generation = as_dataclass(GenerationSettings, generation)
        self.free_text_tools = frozenset(free_text_tools)
        self.model = None
        self.tokenizer = None
        self.metrics: dict[str, ToolCallMetrics | SchemaValidityMetrics] = {}
        self.counts: dict[str, int] = {}
        self.scoring: dict[str, str] = {}
        self.too_long: dict[str, int] = {}  # per benchmark: prompts skipped, longer than the model's positions
        self.out_dir: Path | None = None
        self.summary: dict[str, dict] = {}
        self.report_paths: dict[str, Path] = {}

    def prepare_data(self) -> None:
        prepare_checkpoint(self.policy_settings)

    def configure_model(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.policy_settings.checkpoint)
        if self.model is None:
            device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
            self.model = load_for_inference(self.policy_settings, device)

    def on_test_start(self) -> None:
        # without a logger there is no log dir: keep the report out of the working directory's top level
        root = self.hparams.output_dir or self.trainer.log_dir or Path(self.trainer.default_root_dir) / "eval"
        self.out_dir = Path(root)
        (self.out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        for f in (self.out_dir / "predictions").glob("*.jsonl"):
            f.unlink()
        self.metrics, self.counts, self.scoring = {}, {}, {}
        self.too_long = {}

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        batch = self._prompts_that_fit(batch)
        if not len(batch):
            return
        for p in predict_batch(self.model, self.tokenizer, batch, self.generation,
                               free_text_tools=self.free_text_tools, engine=self.engine):
            self._record(p.group, p)

    def _prompts_that_fit(self, batch: PromptBatch) -> PromptBatch:
        """The batch without the prompts that do not fit the model's positions with `max_new_tokens`, even cut to
        `max_prompt_length`: decoding past the positions a model was trained on is slow and meaningless. They are
        counted per benchmark (`skipped_too_long` in summary.json) and logged, not decoded."""
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if not positions:
            return batch
        room = positions - self.generation.max_new_tokens
        fits = [min(len(ids), self.generation.max_prompt_length) <= room for ids in batch.input_ids]
        for group, ok in zip(batch.groups, fits):
            if not ok:
                self.too_long[group] = self.too_long.get(group, 0) + 1
        keep = [i for i, ok in enumerate(fits) if ok]
        return batch if len(keep) == len(batch) else batch.select(keep)

    def _record(self, group: str, p: Prediction) -> None:
        conv = p.conversation
        if conv.gold is not None:
            metric = self.metrics.setdefault(group, ToolCallMetrics(free_text_tools=self.free_text_tools))
            metric.update_classified([p.classification])
        else:
            metric = self.metrics.setdefault(group, SchemaValidityMetrics())
            metric.update([p.parsed], [conv.tools])
        self.counts[group] = self.counts.get(group, 0) + 1
        if conv.gold is not None:
            self.scoring.setdefault(group, scoring_label(p.scoring, conv))
        with open(self.out_dir / "predictions" / f"{group.replace('/', '__')}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(prediction_record(p), ensure_ascii=False) + "\n")

    def on_test_epoch_end(self) -> None:
        self.summary = {}
        for group, metric in self.metrics.items():
            values = {k: float(v) for k, v in metric.compute().items()}
            self.summary[group] = {"n": self.counts[group], **values}
            if group in self.scoring:  # which scorer produced the numbers: "official (RoTBench evaluate.py)", ...
                self.summary[group]["scoring"] = self.scoring[group]
            for k in ("ts", "pi", "cf", "format_valid", "params_valid"):
                if k in values:
                    self.log(f"test/{group}/{k}", values[k])
        for group, n in self.too_long.items():
            self.summary.setdefault(group, {"n": 0})["skipped_too_long"] = n
        if self.too_long:
            log.warning("%d prompts skipped, longer than the model's %d positions minus %d new tokens: %s",
                        sum(self.too_long.values()), self.model.config.max_position_embeddings,
                        self.generation.max_new_tokens, ", ".join(f"{g} {n}" for g, n in self.too_long.items()))
        self.report_paths = write_report(self.summary, self.out_dir)
        print(f"\nEvaluation report: {self.report_paths['markdown']}\n" + (self.out_dir / "summary.md").read_text())
