"""Peak memory of one SFT optimizer step and one PPO iteration, measured beside the analytical model
(benchmarks/memory_model.py), for a model shape with random weights loaded through the NF4 + LoRA path.

    python -m benchmarks.memory                       # CPU validation: small shapes, model vs measured
    python -m benchmarks.memory --before-after        # the PPO / SFT memory changes at SmolLM2's shape
    python -m benchmarks.memory --rl                  # PPO (shared / adapter critic) vs GRPO, one rollout budget
    python -m benchmarks.memory --engine              # each rollout-engine option at the GRPO shape (SmolLM2)
    python -m benchmarks.memory --project             # the modelled 7B table (CodeLlama-7B, NF4 + LoRA r16)
    python -m benchmarks.memory --shape codellama7b --seq 2048 --bf16 --grad-ckpt   # on a GPU

Every measurement runs in its own child process. On CUDA the peak is `torch.cuda.max_memory_allocated` above the
allocation after setup; on CPU it is the peak resident set size during the step (sampled every millisecond)
above the resident size after setup, with freed heap returned to the system first (malloc_trim).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.memory_model import (
    SHAPES,
    GiB,
    Run,
    dense_copy_bytes,
    engine_generation,
    ppo_iteration,
    sft_step,
    weight_bytes,
)
from benchmarks.rollout import OPTIONS as ROLLOUT_OPTIONS

MiB = 1024 ** 2


# ------------------------------------------------------------------------------------------------- measuring
class PeakRSS:
    """The largest resident set size seen while the context is open (a sampling thread, /proc/self/statm)."""

    def __init__(self, period_s: float = 0.001) -> None:
        self.period_s, self.peak, self._stop = period_s, 0, threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        return int(open("/proc/self/statm").read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.period_s)

    def __enter__(self):
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measure(fn) -> float:
    """Bytes above the post-setup baseline that `fn()` peaks at (CUDA allocator or CPU resident set)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    _trim()
    with PeakRSS() as p:
        base = p.rss()
        fn()
    return p.peak - base


def timed(fn) -> float:
    """Seconds `fn()` takes, the device synchronised before and after."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def configure_on_device(system) -> None:
    """What a Trainer does around a system's model: configure_model on the run's device (CUDA when there is one;
    the children run without a Trainer), then move the module there."""
    from types import SimpleNamespace

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    system._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=device))
    try:
        system.configure_model()
    finally:
        system._trainer = None
    system.to(device)


def setup_bytes() -> int | None:
    """Device memory held after setup (weights, adapters, heads): CUDA only."""
    import torch

    return torch.cuda.memory_allocated() if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------------------------ checkpoints
def build_checkpoint(shape_name: str, out: Path) -> Path:
    """A random Llama of the shape, saved with the tiny ToolWorld tokenizer (token ids only index its first rows)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tl_lightning.models.tiny import build_tokenizer, tokenizer_corpus

    s = SHAPES[shape_name]
    tok = build_tokenizer(tokenizer_corpus(), 1024)
    cfg = LlamaConfig(vocab_size=max(s.vocab, len(tok)), hidden_size=s.hidden, intermediate_size=s.intermediate,
                      num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                      max_position_embeddings=8192, tie_word_embeddings=s.tied, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------- child: SFT
def child_sft(spec: dict) -> dict:
    import torch

    from tl_lightning.systems.sft import SFTSystem

    run = Run(**spec["run"])
    system = SFTSystem(_settings(spec, run), loss_chunk_size=spec["chunk"])
    configure_on_device(system)
    device = next(system.model.parameters()).device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (run.batch, run.seq), generator=g)
    labels = torch.full_like(ids, -100)
    trained = int(run.seq * spec["trained_share"])
    labels[:, -trained:] = ids[:, -trained:]  # the answer turns at the end, as in tool-use data
    tensors = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
               "weights": torch.ones(ids.shape), "key_mask": torch.zeros_like(ids).bool()}
    batch = {k: v.to(device) for k, v in tensors.items()}
    opt = torch.optim.AdamW([p for p in system.parameters() if p.requires_grad], lr=1e-4)

    def step():
        if spec.get("legacy"):
            full_logits_loss(system, batch).backward()
        else:
            out = system._losses(batch)
            (out["weighted_sum"] / out["weight_total"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    result = {"measured": measure(step), "setup": setup_bytes()}  # the first step allocates AdamW's state
    if spec.get("timed"):
        seconds = timed(step)
        result.update(step_s=round(seconds, 3), tokens_per_s=round(run.batch * run.seq / seconds, 1))
    return result


def full_logits_loss(system, batch: dict):
    """The SFT loss as it was before the hidden-state path, for the before/after figure: full-vocabulary logits of
    every position of the batch."""
    from tl_lightning.objectives.weighted_ce import weighted_cross_entropy

    logits = system.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return weighted_cross_entropy(logits, batch["labels"], batch["weights"])


def _settings(spec: dict, run: Run):
    from tl_lightning.models.loading import LoraSettings, ModelSettings

    return ModelSettings(checkpoint=spec["checkpoint"], quantization="nf4",
                         compute_dtype="bfloat16" if run.dtype_bytes == 2 else "float32",
                         lora=LoraSettings(r=run.lora_r, alpha=2 * run.lora_r, dropout=0.0),
                         gradient_checkpointing=run.grad_ckpt)


# ---------------------------------------------------------------------------------------------- child: PPO
def child_ppo(spec: dict) -> dict:
    from types import SimpleNamespace

    import torch

    from tl_lightning.data.batches import PromptBatch
    from tl_lightning.data.steps import all_step_prompts
    from tl_lightning.data.toolworld import ToolWorld
    from tl_lightning.objectives.estimators import GAE, GRPO
    from tl_lightning.systems.critics import AdapterCritic, SharedCritic
    from tl_lightning.systems.ppo import PPOSystem

    run = Run(**spec["run"])

    cls = LegacyPPOSystem() if spec["legacy"] else PPOSystem
    group = spec.get("group_size", 1)
    critic = None if group > 1 else AdapterCritic() if spec["adapter_critic"] else SharedCritic()
    system = cls(_settings(spec, run), critic=critic, advantage=GRPO(group_size=group) if group > 1 else GAE(),
                 generation={"max_new_tokens": spec["new_tokens"], "do_sample": True},
                 ppo={"ppo_epochs": 1, "minibatch_size": run.batch, "logprob_chunk_size": run.head_positions,
                      "rollout_chunk_size": spec.get("rollout_chunk")})
    configure_on_device(system)
    opt = torch.optim.AdamW(system._param_groups())
    system.optimizers = lambda: opt
    system.lr_schedulers = lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    system.manual_backward = lambda loss: loss.backward()
    # what the update reads of its Trainer (data-parallel size and sums), for one process without a Trainer
    system._trainer = SimpleNamespace(world_size=1, global_rank=0, strategy=SimpleNamespace(reduce=lambda x, **_: x))
    n = spec["rollout_batch"] // group
    prompts = all_step_prompts(ToolWorld().split("memory", n * 2))[:n]
    g = torch.Generator().manual_seed(0)
    batch = PromptBatch([torch.randint(3, 1000, (spec["prompt"],), generator=g).tolist() for _ in prompts],
                        prompts, [""] * len(prompts)).repeat_each(group)
    system.runner.tokenizer = NeverStops(system.tokenizer)  # every response gets exactly new_tokens tokens

    def iteration(split: dict | None = None):
        def stage(name, fn):
            if split is None:
                return fn()
            out = []
            split[name] = round(timed(lambda: out.append(fn())), 3)
            return out[0]

        rollout = stage("generate", lambda: system._sample(batch))
        scores, _ = stage("score", lambda: system._score(batch, rollout))
        old_logp, ref_logp, old_values = stage("reference_value", lambda: system._reference_pass(rollout))
        mask = rollout.response_mask.float()
        rewards = system._token_rewards((old_logp - ref_logp) * mask, scores, mask)
        adv, returns = system.advantage.estimate(rewards, old_values, mask)
        stage("update", lambda: system._update(rollout, old_logp, ref_logp, old_values, adv, returns))

    result = {"measured": measure(iteration), "setup": setup_bytes()}
    if spec.get("timed"):
        split: dict = {}
        iteration(split)
        result["split_s"] = split
    return result


# ------------------------------------------------------------------------------------------- child: engine
ENGINE_OPTIONS = {"hf": None, **{k: ROLLOUT_OPTIONS[k] for k in ("loop", "loop+dense", "loop+dense copied")}}
"""Rollout-engine option -> its `DecodeLoop` settings (None: `HFGenerate`), those of benchmarks/rollout.py."""


def child_engine(spec: dict) -> dict:
    import torch

    from tl_lightning.models.engine import DecodeLoop, HFGenerate
    from tl_lightning.models.generation import GenerationSettings
    from tl_lightning.models.loading import load_policy

    run = Run(**spec["run"])
    model = load_policy(_settings(spec, run), "cpu").eval()
    kwargs = ENGINE_OPTIONS[spec["option"]]
    engine = HFGenerate() if kwargs is None else DecodeLoop(**kwargs)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 1000, (spec["prompt"],), generator=g).tolist() for _ in range(spec["prompts"])]
    rows = [p for p in prompts for _ in range(spec["group"])]
    settings = GenerationSettings(max_new_tokens=spec["new_tokens"], do_sample=True)
    # no stop token: every row decodes all its tokens, the cache's largest size
    return {"measured": measure(lambda: engine.generate(model, rows, 0, [-1], settings)), "setup": setup_bytes()}


def engine_cases(tmp: Path, shape: str = "smollm2", prompt: int = 768, new: int = 64, prompts: int = 2,
                 group: int = 8) -> list[dict]:
    """Each rollout-engine option at the GRPO shape, in fp32 on CPU, beside `memory_model.engine_generation`."""
    ckpt = str(build_checkpoint(shape, tmp / shape))
    run, s, rows = Run(1, 0, lora_r=16, dtype_bytes=4), SHAPES[shape], []
    for option, kwargs in ENGINE_OPTIONS.items():
        spec = {"checkpoint": ckpt, "run": asdict(run), "prompt": prompt, "new_tokens": new, "prompts": prompts,
                "group": group, "option": option}
        dense = kwargs is not None and kwargs.get("dense_copy") == "float32"
        modelled = engine_generation(s, prompt, new, prompts, group, 4, dense_copy_bytes(s, 4) if dense else 0,
                                     read_prefix_once=kwargs is not None and kwargs.get("read_prefix_once", True),
                                     padded_batch=kwargs is None)
        rows.append(row(f"engine {option}, {shape} {prompts} prompts × {group}, {prompt}+{new}", run_child(
            "engine", spec), modelled, shape))
    return rows


class NeverStops:
    """The tokenizer as generation and decoding see it, with an end-of-sequence id no model emits."""

    def __init__(self, tok) -> None:
        self.tok, self.pad_token_id, self.eos_token_id = tok, tok.pad_token_id, 10 ** 9

    def decode(self, ids, **kwargs) -> str:
        return self.tok.decode([i for i in ids if i < len(self.tok)], **kwargs)


def LegacyPPOSystem():  # noqa: N802 - a class factory (imports stay in the child)
    """The PPO forward as it was before the memory change: every layer's hidden states and full-vocabulary logits
    of the whole sequence, for the before/after figure."""
    import torch.nn.functional as F

    from tl_lightning.systems.policy import PolicyRunner
    from tl_lightning.systems.ppo import PPOSystem
    from tl_lightning.systems.ppo_rollout import Pass, position_ids

    def response_logp(logits, prompt_length: int):  # (b, R, v) log-softmax of the positions predicting the response
        return F.log_softmax(logits[:, prompt_length - 1: -1].float(), -1)

    class LegacyRunner(PolicyRunner):
        def forward(self, rollout, adapter, head=False, with_entropy=False):
            kwargs = dict(input_ids=rollout.sequences, attention_mask=rollout.attention_mask,
                          position_ids=position_ids(rollout.attention_mask), use_cache=False,
                          output_hidden_states=True)
            if adapter is None:
                with self.model.disable_adapter():
                    out = self.model(**kwargs)
            else:
                self.model.set_adapter(adapter)
                out = self.model(**kwargs)
            p, logp, ent = rollout.prompt_length, None, None
            if head:
                logp = response_logp(out.logits, p).gather(2, rollout.sequences[:, p:, None]).squeeze(-1)
            if with_entropy:
                full = response_logp(out.logits.detach(), p)
                ent = -(full.exp() * full).sum(-1)
            return Pass(out.hidden_states[-1], logp, ent)

    class Legacy(PPOSystem):
        def configure_model(self):
            super().configure_model()
            self.runner = LegacyRunner(self.model, self.tokenizer, self.generation, self.ppo)

    return Legacy


# -------------------------------------------------------------------------------------------------- parent
def run_child(kind: str, spec: dict) -> dict:
    # Fixed mmap threshold: glibc otherwise raises it as large blocks are freed, serves later tensors from a heap
    # it never shrinks, and the resident set then reports freed memory as used.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(256 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024)}
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", kind, json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def row(label: str, result: dict, modelled: dict, shape: str) -> dict:
    """One case: measured peak above setup beside the model; on CUDA also the setup memory and the total, beside the
    modelled weights; timings when the child took them."""
    measured = result["measured"]
    total = sum(v for k, v in modelled.items() if k != "peak_stage") if "peak_stage" not in modelled \
        else modelled["peak_stage"]
    out = {"case": label, "measured_MiB": round(measured / MiB, 1), "modelled_MiB": round(total / MiB, 1),
           "measured_over_modelled": round(measured / max(1.0, total), 3),
           "modelled_terms_MiB": {k: round(v / MiB, 1) for k, v in modelled.items()}}
    if result.get("setup") is not None:
        out.update(setup_GiB=round(result["setup"] / GiB, 2),
                   modelled_weights_GiB=round(sum(weight_bytes(SHAPES[shape]).values()) / GiB, 2),
                   total_GiB=round((result["setup"] + measured) / GiB, 2))
    return {**out, **{k: result[k] for k in ("step_s", "tokens_per_s", "split_s") if k in result}}


def sft_case(ckpt: str, shape: str, run: Run, chunk: int | None, trained_share: float, timed: bool = False,
             legacy: bool = False) -> dict:
    """`legacy`: the loss from full-vocabulary logits of every position, as before the hidden-state path."""
    spec = {"checkpoint": ckpt, "run": asdict(run), "chunk": chunk, "trained_share": trained_share, "timed": timed,
            "legacy": legacy}
    result = run_child("sft", spec)
    trained = None if legacy else int(run.batch * run.seq * trained_share)
    modelled = sft_step(SHAPES[shape], replace(run, head_positions=None if legacy else chunk), trained)
    label = (f"SFT {shape} b{run.batch}×{run.seq} {sft_head_label(chunk, legacy)}"
             f"{', grad ckpt' if run.grad_ckpt else ''}")
    return row(label, result, modelled, shape)


def sft_head_label(chunk: int | None, legacy: bool) -> str:
    return "full logits (before)" if legacy else f"trained positions, chunk {chunk}" if chunk else \
        "trained positions at once"


def ppo_case(ckpt: str, shape: str, run: Run, prompt: int, new: int, rollout_batch: int, adapter_critic: bool,
             legacy: bool, timed: bool = False) -> dict:
    spec = {"checkpoint": ckpt, "run": asdict(run), "prompt": prompt, "new_tokens": new,
            "rollout_batch": rollout_batch, "adapter_critic": adapter_critic, "legacy": legacy, "timed": timed}
    result = run_child("ppo", spec)
    modelled = ppo_iteration(SHAPES[shape], run, prompt, new, rollout_batch, adapter_critic, lean=not legacy)
    label = (f"PPO {shape} prompt {prompt}+{new} batch {rollout_batch} (mb {run.batch}) "
             f"{'adapter' if adapter_critic else 'shared'} critic, {'before' if legacy else 'now'}")
    return row(label, result, modelled, shape)


def grpo_case(ckpt: str, shape: str, run: Run, prompt: int, new: int, prompts: int, group: int,
              chunk: int | None) -> dict:
    spec = {"checkpoint": ckpt, "run": asdict(run), "prompt": prompt, "new_tokens": new,
            "rollout_batch": prompts * group, "adapter_critic": False, "legacy": False, "group_size": group,
            "rollout_chunk": chunk}
    result = run_child("ppo", spec)
    modelled = ppo_iteration(SHAPES[shape], run, prompt, new, prompts * group, False, rollout_chunk=chunk)
    label = (f"GRPO {shape} prompt {prompt}+{new} {prompts} prompts × {group} (mb {run.batch}) no critic"
             f"{f', rollout chunk {chunk}' if chunk else ''}")
    return row(label, result, modelled, shape)


def rl_methods(tmp: Path) -> list[dict]:
    """PPO (shared / adapter critic) vs GRPO at the same shape and rollout budget, and GRPO with 4× the prompts,
    whole-batch vs chunked rollouts."""
    ckpt = str(build_checkpoint("h256l4", tmp / "h256l4"))
    run = Run(4, 0, lora_r=8, dtype_bytes=4, head_positions=1024)
    rows = [ppo_case(ckpt, "h256l4", run, 768, 32, 8, critic, False) for critic in (False, True)]
    rows += [grpo_case(ckpt, "h256l4", run, 768, 32, prompts, 4, chunk)
             for prompts, chunk in ((2, None), (8, None), (8, 8))]
    return rows


def validation(tmp: Path) -> list[dict]:
    rows = []
    for shape in ("tiny", "h256l4"):
        ckpt = str(build_checkpoint(shape, tmp / shape))
        for b, t in ((4, 512), (4, 1024), (8, 1024)):
            rows.append(sft_case(ckpt, shape, Run(b, t, lora_r=8, dtype_bytes=4), None, 0.25))
        rows.append(sft_case(ckpt, shape, Run(4, 1024, lora_r=8, dtype_bytes=4, grad_ckpt=True), None, 0.25))
        rows.append(ppo_case(ckpt, shape, Run(4, 0, lora_r=8, dtype_bytes=4, head_positions=1024), 512, 32, 8,
                             False, False))
    return rows


def before_after(tmp: Path) -> list[dict]:
    ckpt = str(build_checkpoint("smollm2", tmp / "smollm2"))
    rows = [sft_case(ckpt, "smollm2", Run(2, 1024, lora_r=8, dtype_bytes=4), chunk, 0.25, legacy=legacy)
            for chunk, legacy in ((None, True), (None, False), (256, False))]
    for legacy in (True, False):
        rows.append(ppo_case(ckpt, "smollm2", Run(2, 0, lora_r=8, dtype_bytes=4, head_positions=256), 512, 24, 4,
                             False, legacy))
    return rows


def projection() -> list[dict]:
    s, rows = SHAPES["codellama7b"], []
    weights = sum(weight_bytes(s).values())
    for seq in (2048, 4096):
        for chunk, legacy in ((None, True), (None, False), (1024, False)):
            run = Run(1, seq, lora_r=16, dtype_bytes=2, grad_ckpt=True, head_positions=chunk)
            total = weights + sum(sft_step(s, run, trained_positions=None if legacy else seq // 4).values())
            rows.append({"case": f"SFT seq {seq}, batch 1, grad ckpt, {sft_head_label(chunk, legacy)}",
                         "modelled_GiB": round(total / GiB, 2)})
    for adapter_critic in (False, True):
        for lean in (False, True):
            run = Run(4, 0, lora_r=16, dtype_bytes=2, grad_ckpt=True, head_positions=1024)
            stages = ppo_iteration(s, run, 1024, 256, 8, adapter_critic, lean=lean)
            rows.append({"case": f"PPO prompt 1024 + 256, batch 8 (minibatch 4), grad ckpt, "
                                 f"{'adapter' if adapter_critic else 'shared'} critic, {'now' if lean else 'before'}",
                         "modelled_GiB": round((weights + stages["peak_stage"]) / GiB, 2)})
    run = Run(4, 0, lora_r=16, dtype_bytes=2, grad_ckpt=True, head_positions=1024)
    for lean, chunk in ((False, None), (True, None), (True, 4)):  # a long tool-use prompt (RoTBench reaches 4.4k)
        stages = ppo_iteration(s, run, 4096, 256, 8, False, lean=lean, rollout_chunk=chunk)
        rows.append({"case": f"PPO prompt 4096 + 256, batch 8 (minibatch 4), grad ckpt, shared critic, "
                             f"{'now' if lean else 'before'}{f', rollout_chunk_size {chunk}' if chunk else ''}",
                     "modelled_GiB": round((weights + stages["peak_stage"]) / GiB, 2)})
    for prompts, chunk in ((2, None), (8, None), (8, 8)):  # 2 × 4 = PPO's rollout budget
        grpo = ppo_iteration(s, run, 1024, 256, prompts * 4, adapter_critic=False, rollout_chunk=chunk)
        rows.append({"case": f"GRPO prompt 1024 + 256, {prompts} prompts × 4 samples (minibatch 4), grad ckpt, "
                             f"no critic{f', rollout_chunk_size {chunk}' if chunk else ''}",
                     "modelled_GiB": round((weights + grpo["peak_stage"]) / GiB, 2)})
    return [{"weights_GiB": round(weights / GiB, 2), **r} for r in rows]


def shape_cases(a: argparse.Namespace, tmp: Path) -> list[dict]:
    """The measurement at one (e.g. 7B) shape with timings; each row also goes to stderr as it finishes, so a run
    cut short keeps what it measured."""
    t0 = time.perf_counter()
    ckpt = str(build_checkpoint(a.shape, tmp / a.shape))
    print(f"checkpoint built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    runs = [Run(a.batch, seq, 16, 2 if a.bf16 else 4, a.grad_ckpt, 1024) for seq in a.seq]
    cases = [lambda r=r: sft_case(ckpt, a.shape, r, 1024, 0.25, timed=True) for r in runs]
    ppo_run = Run(4, 1024, 16, 2 if a.bf16 else 4, a.grad_ckpt, 1024)
    cases += [lambda c=c: ppo_case(ckpt, a.shape, ppo_run, 1024, 256, 8, c == "adapter", False, timed=True)
              for c in a.critics]
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        rows.append({**case(), "case_wall_s": round(time.perf_counter() - t0, 1)})
        print("ROW " + json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    ap.add_argument("--before-after", action="store_true")
    ap.add_argument("--project", action="store_true")
    ap.add_argument("--rl", action="store_true", help="PPO vs GRPO memory per iteration (h256 L4, CPU-sized)")
    ap.add_argument("--engine", action="store_true", help="each rollout-engine option at the GRPO shape (SmolLM2)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="SFT at each --seq, then PPO (prompt 1024 + 256, batch 8) with each critic, at this shape")
    ap.add_argument("--seq", type=int, nargs="*", default=[1024], help="SFT sequence lengths (none: PPO only)")
    ap.add_argument("--critics", nargs="*", choices=("shared", "adapter"), default=["shared", "adapter"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--grad-ckpt", action="store_true")
    a = ap.parse_args()
    if a.child:
        kind, spec = a.child
        child = {"sft": child_sft, "ppo": child_ppo, "engine": child_engine}[kind]
        print("RESULT " + json.dumps(child(json.loads(spec))), flush=True)
        return
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    if a.project:
        print(json.dumps({"device": "modelled (no measurement)", "rows": projection()}, indent=1))
        return
    with tempfile.TemporaryDirectory() as d:
        if a.shape:
            rows = shape_cases(a, Path(d))
        else:
            rows = (before_after if a.before_after else rl_methods if a.rl else engine_cases if a.engine
                    else validation)(Path(d))
    print(json.dumps({"device": device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
