"""Does TL-Training work on a pretrained model? SmolLM2-135M (NF4 + LoRA) on CPU, with a fair protocol (issue #29).

    OMP_NUM_THREADS=1 python -m benchmarks.study [--variants plain mae] [--part sweep|sft|rl|all] [--quick]

1. Every SFT variant (plain, +MAE, +PKT, MAE + PKT; `protocol.VARIANTS`) is trained at every rate of a sweep
   (seed 0) and scored on a validation set (ToolWorld `val` step prompts); the rate with the best validation CF
   is then trained with the other seeds. Every run has the same steps and data.
2. Every seed's adapter is scored per item on the test sets (at least 100 items each where the file has them:
   held-out ToolWorld, RoTBench First_Turn clean and heavy with RoTBench's official scoring, ToolAlpaca eval_real,
   BFCL v3 simple and multiple with BFCL's checker; `TEST_FILES`), and on the MAE mechanism: the erroneous calls
   of its own training data, prompted in the same situations. A set added later is scored into the stages done.
3. RL arms (`protocol.RL_ARMS`) start from the variant with the best validation CF (its seed-0 adapter), at
   equal rollout budgets, each with the protocol's RL seeds.
4. The report (`report.py`) gives TS / PI / CF with 95% bootstrap intervals and the paired per-item differences
   against plain SFT, and the wall time of every stage.

Each stage writes `<results>/<stage>.json` (the trained adapters go to `<out>`); a rerun skips what is done, so
the study runs in parts (two `--variants` halves side by side on two cores) and across sessions. With
`--results docs/study` the finished stages are kept in the repository: a new machine resumes from them, and an
adapter a later stage needs but the machine lacks is trained again (same variant, rate and seed, which reproduces
it on CPU: `ensure_adapter`).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.real_model.run import CHECKPOINT, stage
from benchmarks.real_model.stages import EVAL_SEED, SHARED, Scale, _fit, log, metric_curve, rl
from benchmarks.study.protocol import QUICK, RL_ARMS, VARIANTS, Protocol, rl_seed_settings, rl_stage
from benchmarks.study.report import write_report
from benchmarks.study.stats import choose_lr, summary
from tl_lightning.core.checkpoints import ensure_checkpoint, load_tokenizer
from tl_lightning.data.batches import PromptBatch
from tl_lightning.data.loaders import load_source
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import predict_batch
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation
from tl_lightning.metrics.tool_call import item_scores
from tl_lightning.models.engine import DecodeLoop
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.models.pretrained import SmolLM2

TEST_FILES = {"rotbench_clean": ("rotbench", SHARED / "rotbench/Data/First_Turn/clean.json", "official"),
              "rotbench_heavy": ("rotbench", SHARED / "rotbench/Data/First_Turn/heavy.json", "official"),
              "toolalpaca_real": ("toolalpaca", SHARED / "toolalpaca/data/eval_real.json", "lenient"),
              "bfcl_simple": ("bfcl", "simple", "official"),  # a BFCL v3 category of the installed bfcl-eval
              "bfcl_multiple": ("bfcl", "multiple", "official")}
"""Set name → (`load_source` format, path, scoring mode): the real benchmarks, with their official scorers where
they have one (RoTBench's `evaluate.py`, BFCL's `ast_checker`, reproduced in `metrics/`)."""


# ----------------------------------------------------------------------------------------------------- items
def _fitting(items: list[Conversation], tok, p: Protocol) -> list[Conversation]:
    ids = prompt_token_ids(items, PaperFormat(tok.eos_token), tok)
    return [c for c, x in zip(items, ids) if len(x) <= p.max_prompt_tokens][:p.test_items]


def test_sets(tok, p: Protocol) -> dict[str, tuple[list[Conversation], str]]:
    """Set name → (items in file order, scoring mode)."""
    heldout = all_step_prompts(ToolWorld(seed=EVAL_SEED).split("heldout", p.test_items))
    sets = {"toolworld_heldout": (_fitting(heldout, tok, p), "lenient")}
    for name, (fmt, path, mode) in TEST_FILES.items():
        sets[name] = (_fitting(list(load_source(fmt, path)), tok, p), mode)
    return sets


def val_set(tok, p: Protocol) -> dict[str, tuple[list[Conversation], str]]:
    return {"toolworld_val": (_fitting(all_step_prompts(ToolWorld(seed=0).split("val", p.val_items)), tok, p)[
        :p.val_items], "lenient")}


def error_situations(p: Protocol) -> list[tuple[Conversation, dict]]:
    """MAE's mechanism: every erroneous call of the training data, as (the conversation up to it, the call)."""
    out = []
    for conv in ToolWorld(seed=0).split("train", p.train_size):
        for err in conv.meta.get("errors", []):
            i = err["message_index"]
            bad = conv.messages[i].calls
            out.append((Conversation(f"{conv.id}#{i}", conv.tools, conv.messages[:i], gold=(bad,)),
                        {"name": bad[0].name, "arguments": bad[0].arguments}))
    return out


# ---------------------------------------------------------------------------------------------------- stages
def train(variant: str, lr: float, seed: int, p: Protocol, checkpoint: str, out: Path) -> dict:
    data = {"format": "toolworld", "split": "train", "size": p.train_size, "seed": 0}
    log_dir = _fit("sft.yaml", "paper", [f"--model.init_args.policy.checkpoint={checkpoint}",
                                         f"--trainer.max_steps={p.sft_steps}",
                                         f"--trainer.val_check_interval={p.sft_steps}",
                                         f"--data.init_args.train={json.dumps(data)}",
                                         f"--data.init_args.batch_size={p.sft_batch}",
                                         f"--model.init_args.optimizer.init_args.lr={lr}",
                                         f"--seed_everything={seed}", *VARIANTS[variant]], out,
                   f"sft_{variant}_lr{lr:g}_s{seed}")
    return {"adapter": str(log_dir / "hf" / "final"), "lr": lr, "seed": seed,
            "train_loss": metric_curve(log_dir, "train/loss")}


def score(checkpoint: str, adapter: str | None, sets: dict, p: Protocol, situations=()) -> dict:
    """Per item of every set: {id, category, output, ts, pi, cf} (greedy); with `situations`, the MAE repeat rate
    too."""
    tok = load_tokenizer(checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32",
                                             lora=None, adapter=adapter))
    settings = GenerationSettings(max_new_tokens=p.max_new_tokens, max_prompt_length=p.max_prompt_tokens)
    renderer, out = PaperFormat(tok.eos_token), {}
    engine = DecodeLoop(prefill_tokens=p.prefill_tokens, merge_decode_gib=p.merge_decode_gib)  # one dense copy
    for name, (items, mode) in sets.items():
        t0 = time.time()
        batch = PromptBatch(prompt_token_ids(items, renderer, tok), items, [name] * len(items), [mode] * len(items))
        preds = predict_batch(model, tok, batch, settings, engine=engine)  # the whole set: the engine plans it
        out[name] = [{"id": x.conversation.id, "category": x.classification.category, "output": x.text,
                      **item_scores(x.classification)} for x in preds]
        log(f"  {name}: {len(preds)} items, CF {sum(r['cf'] for r in out[name]) / max(1, len(preds)):.2f} "
            f"({time.time() - t0:.0f} s)")
    if situations:
        convs = [c for c, _ in situations]
        batch = PromptBatch(prompt_token_ids(convs, renderer, tok), convs, [""] * len(convs), ["lenient"] * len(convs))
        preds = predict_batch(model, tok, batch, settings, engine=engine)
        out["mae_repeats"] = [{"id": x.conversation.id, "repeated": float(_same_call(x.text, bad))}
                              for x, (_, bad) in zip(preds, situations)]
    del model
    gc.collect()
    return out


def _same_call(text: str, bad: dict) -> bool:
    calls = parse_calls(text).calls
    return len(calls) == 1 and calls[0].name == bad["name"] and calls[0].arguments == bad["arguments"]


# -------------------------------------------------------------------------------------------------------- run
def ensure_adapter(result: dict, retrain) -> str:
    """The adapter a finished stage names; trained again by `retrain` where this machine lacks it (a study resumed
    from kept results)."""
    if (Path(result["adapter"]) / "adapter_config.json").exists():
        return result["adapter"]
    log(f"{result['adapter']} is not on this machine: training it again")
    return retrain()["adapter"]


def test_stage(results: Path, name: str, run: dict, retrain, sets: dict, checkpoint: str, p: Protocol,
               situations=(), **fields) -> dict:
    """Stage `name`: the per-item scores of `run`'s adapter on every set (and on the MAE situations), kept with
    `fields`. A set added to the protocol after the stage ran (`TEST_FILES`) is scored and merged in; the sets it
    has are kept."""
    def scores(todo: dict, mae=situations) -> dict:
        return score(checkpoint, ensure_adapter(run, retrain), todo, p, mae)

    done = stage(results, name, lambda: {"adapter": run["adapter"], **fields, "scores": scores(sets)})
    missing = {k: v for k, v in sets.items() if k not in done["scores"]}
    if missing:
        log(f"{name}: scoring {', '.join(missing)} (added since it ran)")
        t0 = time.time()
        done["scores"].update(scores(missing, ()))
        done["stage_wall_s"] = round(done.get("stage_wall_s", 0) + time.time() - t0, 1)
        (results / f"{name}.json").write_text(json.dumps(done, indent=1))
    return done


def run_sft(variants: list[str], p: Protocol, checkpoint: str, results: Path, out: Path, sweep_only: bool = False,
            seeds: list[int] | None = None) -> None:
    tok = load_tokenizer(checkpoint)
    val, tests, situations = val_set(tok, p), test_sets(tok, p), error_situations(p)
    for variant in variants:
        sweep = {}
        for lr in p.lrs:
            def sweep_run(lr: float = lr) -> dict:
                result = train(variant, lr, 0, p, checkpoint, out)
                return {**result, "val": score(checkpoint, result["adapter"], val, p)}

            sweep[lr] = stage(results, f"sweep_{variant}_lr{lr:g}", sweep_run)
        chosen = choose_lr({lr: summary(r["val"]["toolworld_val"]) for lr, r in sweep.items()})
        log(f"{variant}: learning rate {chosen:g} (best validation CF)")
        if sweep_only:
            continue
        for seed in seeds if seeds is not None else p.seeds:
            def train_seed(seed: int = seed) -> dict:
                return train(variant, chosen, seed, p, checkpoint, out)

            run = sweep[chosen] if seed == 0 else stage(results, f"sft_{variant}_s{seed}", train_seed)
            test_stage(results, f"test_{variant}_s{seed}", run, train_seed, tests, checkpoint, p, situations,
                       lr=chosen, seed=run["seed"])


def best_variant(results: Path, p: Protocol) -> tuple[str, float, dict]:
    """(variant, its chosen rate, its seed-0 sweep run) with the best validation CF; every sweep must be done."""
    best = None
    for variant in VARIANTS:
        sweep = {lr: json.loads((results / f"sweep_{variant}_lr{lr:g}.json").read_text()) for lr in p.lrs}
        lr = choose_lr({k: summary(r["val"]["toolworld_val"]) for k, r in sweep.items()})
        cf = summary(sweep[lr]["val"]["toolworld_val"])["cf"]
        if best is None or cf > best[0]:
            best = (cf, variant, lr, sweep[lr])
    return best[1:]


def run_rl(p: Protocol, checkpoint: str, results: Path, out: Path, arms: list[str] | None = None,
           seeds: list[int] | None = None) -> None:
    variant, lr, start = best_variant(results, p)
    log(f"RL starts from {variant} ({start['adapter']})")
    tests = test_sets(load_tokenizer(checkpoint), p)
    scale = Scale(train_size=p.train_size, rl_iterations=p.rl_iterations, rl_prompts=p.rl_prompts)
    for arm in arms or list(RL_ARMS):
        method, overrides = RL_ARMS[arm]
        for seed in seeds if seeds is not None else p.rl_seeds:
            name = rl_stage(arm, seed)

            def run_arm(method: str = method, overrides: tuple = overrides, name: str = name, seed: int = seed) -> dict:
                adapter = ensure_adapter(start, lambda: train(variant, lr, 0, p, checkpoint, out))
                return {**rl(adapter, "paper", checkpoint, scale, out, method,
                             (*overrides, *rl_seed_settings(seed)), name), "start": variant, "seed": seed}

            result = stage(results, name, run_arm)
            test_stage(results, f"test_{name}", result, run_arm, tests, checkpoint, p)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="where the runs train (default runs/study, or runs/study-quick)")
    ap.add_argument("--results", default=None,
                    help="where each finished stage and the report are written and read back (default: --out); "
                         "docs/study keeps them in the repository")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--part", choices=["sweep", "sft", "rl", "report", "all"], default="all",
                    help="sweep: only the learning-rate sweeps; sft: sweeps, seeds and their tests")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="train and test only these of the protocol's seeds (default all; SFT seeds with --part "
                         "sweep/sft, RL seeds with --part rl): e.g. seed 0 of every variant first")
    ap.add_argument("--arms", nargs="+", choices=list(RL_ARMS), default=None,
                    help="run only these RL arms, in this order (default all): two halves side by side")
    ap.add_argument("--quick", action="store_true", help="toy sizes: the whole pipeline in minutes")
    ap.add_argument("--checkpoint", default=CHECKPOINT)
    a = ap.parse_args(argv)
    p = QUICK if a.quick else Protocol()
    for parts, allowed, kind in ((("sweep", "sft", "all"), p.seeds, "SFT"), (("rl", "all"), p.rl_seeds, "RL")):
        if a.part in parts and set(a.seeds or ()) - set(allowed):
            ap.error(f"--seeds {sorted(set(a.seeds) - set(allowed))} are not among the protocol's {kind} seeds "
                     f"{list(allowed)}")
    out = Path(a.out or ("runs/study-quick" if a.quick else "runs/study"))
    results = Path(a.results) if a.results else out
    for d in (out, results):
        d.mkdir(parents=True, exist_ok=True)
    (results / "protocol.json").write_text(json.dumps(asdict(p), indent=1))
    checkpoint = ensure_checkpoint(a.checkpoint, SmolLM2())
    if a.part in ("sweep", "sft", "all"):
        run_sft(a.variants, p, checkpoint, results, out, sweep_only=a.part == "sweep", seeds=a.seeds)
    if a.part in ("rl", "all"):
        run_rl(p, checkpoint, results, out, a.arms, seeds=a.seeds)
    write_report(results, p)


if __name__ == "__main__":
    main()
