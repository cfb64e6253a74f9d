"""The real-model benchmark's stages: evaluation sets, zero-shot decoding, SFT, RL; each returns a JSON-able dict.

Every model is decoded greedily on the same items with `evaluation.predict` (render → generate → parse →
`taxonomy.classify`, the lenient reading of docs/taxonomy.md) and scored with `ToolCallMetrics` (TS / PI / CF,
error-category rates) and the IRM `RewardTable`. Training runs go through `main.py fit` with the shipped
`configs/smollm2/` configs plus size overrides, so the benchmark exercises exactly what a user runs.
"""

from __future__ import annotations

import csv
import gc
import json
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.loaders import load_source
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import Prediction, predict
from tl_lightning.format.render import make_renderer
from tl_lightning.format.schema import Conversation
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.rewards.reward import RewardTable

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "smollm2"
SHARED = ROOT.parent / "shared" / "data"
STYLES = ("paper", "chat_template")
EVAL_SEED = 10_000  # held-out ToolWorld: a seed and split name no training run uses
# evaluation set → (loader format, file under ../shared/data); ToolWorld is generated
FILE_SETS = {"rotbench_clean": ("rotbench", "rotbench/Data/First_Turn/clean.json"),
             "rotbench_heavy": ("rotbench", "rotbench/Data/First_Turn/heavy.json"),
             "toolalpaca_real": ("toolalpaca", "toolalpaca/data/eval_real.json")}
SET_NAMES = ("toolworld_heldout", *FILE_SETS)
GRPO_GROUP_SIZE = 4  # configs/smollm2/grpo.yaml: advantage.init_args.group_size


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run (the full run and `--quick` differ only here)."""

    eval_items: int = 16
    """Items per evaluation set (a seeded sample of the items whose prompts fit `max_prompt_tokens`)."""
    max_prompt_tokens: int = 1024
    """Longest prompt kept, in tokens, under the longer of the two prompt styles."""
    max_new_tokens: int = 64
    eval_batch: int = 8
    train_size: int = 80
    """ToolWorld training conversations (SFT data and RL prompts)."""
    sft_steps: int = 40
    sft_batch: int = 2
    rl_iterations: int = 6
    rl_prompts: int = 2
    """Prompts per RL iteration (each sampled `group_size` times, configs/smollm2/grpo.yaml)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _candidates(name: str) -> list[Conversation]:
    if name == "toolworld_heldout":
        return all_step_prompts(ToolWorld(seed=EVAL_SEED).split("heldout", 60))
    fmt, path = FILE_SETS[name]
    return list(load_source(fmt, SHARED / path))


def eval_sets(checkpoint: str, scale: Scale) -> dict[str, list[Conversation]]:
    """Set name → items: a seeded sample (kept in file order) of the items whose prompt fits in both styles."""
    tok = load_tokenizer(checkpoint)
    renderers = [make_renderer(style, tok) for style in STYLES]
    sets = {}
    for name in SET_NAMES:
        items = _candidates(name)
        lengths = [prompt_token_ids(items, r, tok) for r in renderers]
        fits = [i for i in range(len(items)) if max(len(ids[i]) for ids in lengths) <= scale.max_prompt_tokens]
        chosen = sorted(random.Random(0).sample(fits, min(scale.eval_items, len(fits))))
        sets[name] = [items[i] for i in chosen]
        log(f"eval set {name}: {len(chosen)} of {len(items)} items ({len(fits)} fit {scale.max_prompt_tokens} tokens)")
    return sets


def summarize(preds: list[Prediction]) -> dict:
    """TS / PI / CF, category rates and counts, mean IRM reward, and a few raw responses."""
    metric = ToolCallMetrics()
    metric.update_classified([p.classification for p in preds])
    cats = Counter(p.classification.category for p in preds)
    table = RewardTable()
    return {**{k: round(float(v), 4) for k, v in metric.compute().items()}, "items": len(preds),
            "reward": round(sum(table(c) * n for c, n in cats.items()) / max(1, len(preds)), 4),
            "categories": dict(cats), "samples": [p.text[:200] for p in preds[:3]]}


def evaluate(checkpoint: str, adapter: str | None, style: str, sets: dict[str, list[Conversation]],
             scale: Scale, label: str) -> dict:
    """Greedy decoding of every set with one model (base + optional adapter) in one prompt style."""
    tok = load_tokenizer(checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32",
                                             lora=None, adapter=adapter))
    settings = GenerationSettings(max_new_tokens=scale.max_new_tokens, max_prompt_length=scale.max_prompt_tokens)
    out = {}
    for name, prompts in sets.items():
        t0 = time.time()
        preds = predict(model, tok, make_renderer(style, tok), prompts, settings, batch_size=scale.eval_batch)
        out[name] = {**summarize(preds), "wall_s": round(time.time() - t0, 1)}
        log(f"{label} [{style}] {name}: TS {out[name]['ts']:.2f} CF {out[name]['cf']:.2f} "
            f"reward {out[name]['reward']:+.2f} ({out[name]['wall_s']:.0f} s)")
    del model
    gc.collect()
    return out


def _fit(config: str, style: str, overrides: list[str], run_dir: Path, name: str) -> Path:
    from main import cli_main

    shutil.rmtree(run_dir / name, ignore_errors=True)  # a half-finished earlier attempt
    overlay = ["--config", str(CONFIGS / "chat_template.yaml")] if style == "chat_template" else []
    cli_main(["fit", "--config", str(CONFIGS / config), *overlay, *overrides, f"--trainer.default_root_dir={run_dir}",
              f"--trainer.logger.init_args.save_dir={run_dir}", f"--trainer.logger.init_args.name={name}"])
    return run_dir / name / "version_0"


def metric_curve(log_dir: Path, key: str) -> list[float]:
    """One logged metric, in order (CSVLogger's metrics.csv; rows without it skipped)."""
    with open(log_dir / "metrics.csv") as f:
        return [round(float(r[key]), 4) for r in csv.DictReader(f) if r.get(key)]


def sft(variant: str, style: str, checkpoint: str, scale: Scale, run_dir: Path) -> dict:
    """SFT with configs/smollm2/sft.yaml: "mae_pkt" as shipped, "plain" without MAE and with uniform weights."""
    plain = ["--data.init_args.mae=" + json.dumps({"detector": None}),
             "--data.init_args.weighting=tl_lightning.data.weighting.UniformWeighting"] if variant == "plain" else []
    data = {"format": "toolworld", "split": "train", "size": scale.train_size, "seed": 0}
    t0 = time.time()
    log_dir = _fit("sft.yaml", style, [f"--model.init_args.policy.checkpoint={checkpoint}",
                                       f"--trainer.max_steps={scale.sft_steps}",
                                       f"--trainer.val_check_interval={scale.sft_steps}",
                                       f"--data.init_args.train={json.dumps(data)}",
                                       f"--data.init_args.batch_size={scale.sft_batch}", *plain], run_dir, variant)
    stats = json.loads((log_dir / "data_stats.json").read_text())["train"]
    return {"wall_s": round(time.time() - t0, 1), "adapter": str(log_dir / "hf" / "final"),
            "train_loss": metric_curve(log_dir, "train/loss"), "val_loss": metric_curve(log_dir, "val/loss"),
            "key_token_acc": metric_curve(log_dir, "train/key_token_acc"),
            "trained_tokens": stats["trained_tokens"], "mae_blocked_calls": sum(stats["mae"].values())}


def rl(adapter: str, style: str, checkpoint: str, scale: Scale, run_dir: Path, method: str = "grpo",
       overrides: tuple[str, ...] = (), name: str | None = None) -> dict:
    """RL as shipped in configs/smollm2/<method>.yaml ("grpo" or "ppo") from an SFT adapter, at one rollout budget:
    GRPO samples `rl_prompts` prompts `group_size` times (4, in its config), PPO samples 4 × `rl_prompts` prompts
    once; `overrides` are further command-line settings (another reward), `name` the run's folder (default:
    `method`). Returns the reward and format-error rate per iteration."""
    data = {"format": "toolworld", "split": "train", "size": scale.train_size, "seed": 0}
    prompts = scale.rl_prompts if method == "grpo" else scale.rl_prompts * GRPO_GROUP_SIZE
    t0 = time.time()
    log_dir = _fit(f"{method}.yaml", style, [f"--model.init_args.policy.checkpoint={checkpoint}",
                                             f"--model.init_args.policy.adapter={adapter}",
                                             f"--trainer.limit_train_batches={scale.rl_iterations}",
                                             f"--data.init_args.source={json.dumps(data)}",
                                             f"--data.init_args.batch_size={prompts}", *overrides], run_dir,
                   name or method)
    return {"wall_s": round(time.time() - t0, 1), "adapter": str(log_dir / "hf" / "final"),
            "reward": metric_curve(log_dir, "reward/mean"), "cf": metric_curve(log_dir, "reward/cf"),
            "format_error": metric_curve(log_dir, "reward/rate/format_error"),
            "kl": metric_curve(log_dir, "ppo/kl"),
            "time_per_iteration": {k: metric_curve(log_dir, f"time/{k}") for k in ("rollout", "ref_value", "update")}}
