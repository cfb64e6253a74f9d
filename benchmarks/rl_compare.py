"""IRM with PPO (GAE + adapter critic, the paper) vs critic-free GRPO and RLOO, from the same SFT adapter with equal
rollout budgets, on the tiny ToolWorld model (fixed seeds; every stage in its own process).

    python -m benchmarks.rl_compare [--iterations 30] [--responses 16] [--out runs/rl_compare]

1. build a tiny model and SFT it on ToolWorld (the quickstart config, `--sft-epochs`);
2. run each RL method for `--iterations` iterations of `--responses` sampled responses each: PPO samples
   `responses` prompts once, GRPO / RLOO sample `responses / 4` prompts 4 times;
3. greedily decode 64 held-out ToolWorld step prompts with each adapter: mean IRM reward, correct rate, format
   errors; and report each RL run's wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

STAGES = {
    "ppo": ["--config", "configs/ppo_quickstart.yaml", "--model.init_args.critic=AdapterCritic",
            "--model.init_args.advantage.init_args.whiten=true", "--model.init_args.critic_lr=1e-3"],
    "grpo": ["--config", "configs/grpo_quickstart.yaml"],
    "rloo": ["--config", "configs/grpo_quickstart.yaml",
             '--model.init_args.advantage={"class_path": "tl_lightning.objectives.estimators.RLOO", '
             '"init_args": {"group_size": 4}}'],
}
COMMON = ["--model.init_args.actor_lr=1e-4", "--model.init_args.generation.temperature=0.7",
          "--model.init_args.kl.controller.coef=0.1", "--model.init_args.ppo.minibatch_size=8"]


def child(args: list[str]) -> None:
    """Run one `main.py fit` and print its wall time and peak resident memory."""
    from main import cli_main

    t, cpu = time.perf_counter(), time.process_time()
    cli_main(args)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # CPU seconds as well as wall: on a shared machine wall time depends on what else runs, CPU time much less
    print("RESULT " + json.dumps({"wall_s": round(time.perf_counter() - t, 1),
                                  "cpu_s": round(time.process_time() - cpu, 1), "peak_rss_mib": round(peak_mib, 1)}))


def fit(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.rl_compare", "--child", json.dumps(args)],
                         capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"stage failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def heldout(ckpt: str, adapter: str, n: int = 64) -> dict:
    from tl_lightning.core.checkpoints import load_tokenizer
    from tl_lightning.data.sources import DataSource
    from tl_lightning.data.steps import all_step_prompts
    from tl_lightning.evaluation.predict import predict
    from tl_lightning.format.render import PaperFormat
    from tl_lightning.models.generation import GenerationSettings
    from tl_lightning.models.loading import ModelSettings, load_for_inference
    from tl_lightning.rewards.reward import RewardTable

    tok = load_tokenizer(ckpt)
    model = load_for_inference(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32", lora=None,
                                             adapter=adapter))
    prompts = all_step_prompts(DataSource(split="heldout", size=40).load()[0])[:n]
    preds = predict(model, tok, PaperFormat(tok.eos_token), prompts, GenerationSettings(max_new_tokens=64),
                    batch_size=16)
    # scored as the reward reads responses (paper convention), and as the metrics do (lenient)
    from tl_lightning.rewards.reward import tool_call_rewards

    paper = Counter(c.category for c in tool_call_rewards([p.text for p in preds], [p.conversation for p in preds],
                                                          convention="paper")[1])
    lenient = Counter(p.classification.category for p in preds)
    return {"mean_reward": round(sum(RewardTable()(c) * k for c, k in paper.items()) / len(preds), 4),
            "correct_rate": round(paper["correct"] / len(preds), 4),
            "format_errors": paper["format_error"] + paper["no_call"],
            "lenient_cf": round(lenient["correct"] / len(preds), 4), "items": len(preds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sft-epochs", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--responses", type=int, default=16, help="sampled responses per RL iteration (all methods)")
    ap.add_argument("--methods", default="ppo,grpo,rloo")
    ap.add_argument("--out", default="runs/rl_compare")
    a = ap.parse_args()
    if a.child:
        child(json.loads(a.child))
        return
    out = Path(a.out)
    ckpt = str(out / "tiny-llama")
    logs = ["--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}"]
    sft = out / "sft" / "version_0" / "hf" / "final"
    if not sft.is_dir():
        print("SFT ...", flush=True)
        fit(["fit", "--config", "configs/quickstart.yaml", f"--model.init_args.policy.checkpoint={ckpt}",
             f"--trainer.max_epochs={a.sft_epochs}", "--trainer.logger.init_args.name=sft",
             "--trainer.logger.init_args.version=0", "--data.init_args.val_generation=0", *logs])
    results = {"sft": heldout(ckpt, str(sft))}
    for method in a.methods.split(","):
        prompts = a.responses if method == "ppo" else a.responses // 4
        print(f"{method}: {a.iterations} iterations x {prompts} prompts ...", flush=True)
        run = fit(["fit", *STAGES[method], *COMMON, f"--model.init_args.policy.checkpoint={ckpt}",
                   f"--model.init_args.policy.adapter={sft}", f"--trainer.limit_train_batches={a.iterations}",
                   f"--data.init_args.batch_size={prompts}", f"--trainer.logger.init_args.name={method}",
                   "--trainer.logger.init_args.version=0", *logs])
        results[method] = {**heldout(ckpt, str(out / method / "version_0" / "hf" / "final")), **run}
    print(json.dumps({"model": "tiny Llama h64 L2 (random init, SFT on ToolWorld), NF4 + LoRA, CPU",
                      "settings": {"sft_epochs": a.sft_epochs, "iterations": a.iterations,
                                   "responses_per_iteration": a.responses, "group_size": 4},
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
