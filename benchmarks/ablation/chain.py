"""One ablation chain, run in its own process: SFT with (MAE?, PKT?) → evaluate → PPO (IRM) from it → evaluate.

    python -m benchmarks.ablation.chain SPEC.json

SPEC (written by `benchmarks.ablation.run`) holds the seed, the switches, the scale and the directories. Each step
writes its result file and is skipped when that file exists, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.mae import StructuredDetector, erroneous_turns
from tl_lightning.data.noise import add_noise
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import encode_rendered
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import predict
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation, Message
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.objectives.weighted_ce import token_cross_entropy
from tl_lightning.rewards.reward import RewardTable

HERE = Path(__file__).parent
EVAL_SEED = 10_000  # held-out ToolWorld: a split name and seed no training run uses
MAE_ON = {"class_path": "tl_lightning.data.mae.StructuredDetector"}


@dataclass(frozen=True)
class Scale:
    """What the full run and `--quick` differ in."""

    seeds: int = 3
    hidden: int = 64
    layers: int = 2
    train_size: int = 400
    epochs: int = 10
    batch_size: int = 8
    lr: float = 6e-3
    ppo_iterations: int = 12
    rollout_batch: int = 16
    eval_conversations: int = 30
    probe_conversations: int = 100
    eval_batch: int = 16
    max_new_tokens: int = 64


def heldout_prompts(scale: Scale, level: str) -> list:
    """Step prompts of the held-out ToolWorld split at a noise level (the same items at every level)."""
    convs = ToolWorld(seed=EVAL_SEED).split("heldout", scale.eval_conversations)
    return all_step_prompts([add_noise(c, level, seed=EVAL_SEED) for c in convs])


def call_logprob(model, tok, conv: Conversation, messages: tuple[Message, ...]) -> float:
    """log P(last assistant call | everything before it), teacher-forced; tokens located by the renderer's spans."""
    last = len(messages) - 1
    blocked = frozenset(i for i, m in enumerate(messages) if m.role == "assistant" and i != last)
    enc = encode_rendered(PaperFormat(tok.eos_token).render(conv, messages=messages), tok,
                          tuple(t.name for t in conv.tools), blocked)
    logits = model(input_ids=torch.tensor([enc.input_ids]), use_cache=False).logits
    return -float(token_cross_entropy(logits, torch.tensor([enc.labels])).sum())


@torch.no_grad()
def error_imitation(model, tok, scale: Scale) -> dict:
    """How much the model learned the erroneous calls: on held-out conversations where every call is preceded
    by an erroneous attempt, the log-likelihood margin log P(corrected call) − log P(erroneous attempt), both
    given the context before the attempt. MAE never trains on attempts like these, so it should widen the margin."""
    convs = ToolWorld(seed=EVAL_SEED + 1, error_rate=1.0).split("probe", scale.probe_conversations)
    margins = []
    for conv in convs:
        for i in sorted(erroneous_turns(conv, StructuredDetector())):
            prefix, corrected = conv.messages[:i], next(m for m in conv.messages[i + 1:] if m.role == "assistant")
            margins.append(call_logprob(model, tok, conv, prefix + (corrected,)) -
                           call_logprob(model, tok, conv, prefix + (conv.messages[i],)))
    return {"pairs": len(margins), "mean_margin": round(statistics.fmean(margins), 3),
            "error_preferred": round(sum(m < 0 for m in margins) / len(margins), 4)}


def evaluate(checkpoint: str, adapter: str, scale: Scale, levels: list[str]) -> dict:
    """Greedy decoding of the held-out prompts at each noise level (TS/PI/CF, category rates, mean IRM reward),
    plus the error-imitation probe."""
    tok = load_tokenizer(checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32",
                                             lora=None, adapter=adapter))
    out = {"error_imitation": error_imitation(model, tok, scale)}
    for level in levels:
        preds = predict(model, tok, PaperFormat(tok.eos_token), heldout_prompts(scale, level),
                        GenerationSettings(max_new_tokens=scale.max_new_tokens), batch_size=scale.eval_batch)
        metric = ToolCallMetrics()
        metric.update_classified([p.classification for p in preds])
        cats = Counter(p.classification.category for p in preds)
        out[level] = {**{k: round(float(v), 4) for k, v in metric.compute().items()},
                      "reward": round(sum(RewardTable()(c) * n for c, n in cats.items()) / len(preds), 4),
                      "items": len(preds)}
    return out


def ppo_reward_curve(log_dir: Path) -> list[float]:
    """Rollout mean reward per PPO iteration, from the CSV log."""
    import csv

    with open(log_dir / "metrics.csv") as f:
        return [round(float(r["reward/mean"]), 4) for r in csv.DictReader(f) if r.get("reward/mean")]


def _fit(config: str, overrides: list[str], run_dir: Path, name: str) -> Path:
    from main import cli_main

    shutil.rmtree(run_dir / name, ignore_errors=True)  # a half-finished earlier attempt
    cli_main(["fit", "--config", str(HERE / config), *overrides, f"--trainer.default_root_dir={run_dir}",
              f"--trainer.logger.init_args.save_dir={run_dir}", f"--trainer.logger.init_args.name={name}"])
    return run_dir / name / "version_0"


def run_chain(spec: dict) -> None:
    scale, seed, mae, pkt = Scale(**spec["scale"]), spec["seed"], spec["mae"], spec["pkt"]
    ckpt, run_dir, levels = spec["checkpoint"], Path(spec["run_dir"]), spec["levels"]
    common = [f"--seed_everything={seed}", f"--model.init_args.policy.checkpoint={ckpt}"]
    data = {"format": "toolworld", "split": "train", "size": scale.train_size, "seed": seed}
    sft_result = run_dir / "sft.json"
    if not sft_result.exists():
        t0 = time.time()
        log_dir = _fit("sft.yaml", [*common, f"--trainer.max_epochs={scale.epochs}",
                                    f"--data.init_args.train={json.dumps(data)}",
                                    f"--data.init_args.batch_size={scale.batch_size}",
                                    f"--data.init_args.shuffle_seed={seed}",
                                    f"--model.init_args.optimizer.init_args.lr={scale.lr}",
                                    # a nested null cannot be set with a dotted key: set its parent as a dict
                                    "--data.init_args.mae=" + json.dumps({"detector": MAE_ON if mae else None}),
                                    f"--data.init_args.weighting={'PKTWeighting' if pkt else 'UniformWeighting'}"],
                       run_dir, "sft")
        train_s = time.time() - t0
        stats = json.loads((log_dir / "data_stats.json").read_text())["train"]
        result = {"train_s": round(train_s, 1), "eval": evaluate(ckpt, str(log_dir / "hf" / "final"), scale, levels),
                  "mae_masked_calls": sum(stats["mae"].values()) if mae else 0,
                  "trained_tokens": stats["trained_tokens"]}
        sft_result.write_text(json.dumps(result, indent=1))
    ppo_result = run_dir / "ppo.json"
    if not ppo_result.exists():
        t0 = time.time()
        log_dir = _fit("ppo.yaml", [*common,
                                    f"--model.init_args.policy.adapter={run_dir / 'sft/version_0/hf/final'}",
                                    f"--model.init_args.rollout_seed={seed}", f"--data.init_args.shuffle_seed={seed}",
                                    f"--data.init_args.source={json.dumps(data)}",
                                    f"--data.init_args.batch_size={scale.rollout_batch}",
                                    f"--trainer.limit_train_batches={scale.ppo_iterations}"], run_dir, "ppo")
        train_s = time.time() - t0
        result = {"train_s": round(train_s, 1), "eval": evaluate(ckpt, str(log_dir / "hf" / "final"), scale, levels),
                  "rollout_reward": ppo_reward_curve(log_dir)}
        ppo_result.write_text(json.dumps(result, indent=1))


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    run_chain(spec)


if __name__ == "__main__":
    main()
