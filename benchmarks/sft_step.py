"""SFT benchmarks, printed as JSON:

1. step time of PKT-weighted CE vs plain CE (same model, same batch, alternating steps in one process; target
   ratio <= 1.02): forward + loss + backward + AdamW step on the tiny NF4 + LoRA model;
2. tokens processed per epoch: our one pass per conversation vs the paper code's one copy per assistant turn
   (prefix up to that turn), on ToolWorld and on the multi-turn conversations in ../shared/data.

    python -m benchmarks.sft_step [--steps 30] [--hidden 64] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.loaders import load_source
from tl_lightning.data.mae import MAESettings, apply_mae
from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.data.tokenization import encode_rendered
from tl_lightning.format.render import PaperFormat
from tl_lightning.models.loading import LoraSettings, ModelSettings, load_policy
from tl_lightning.models.tiny import build_tiny_checkpoint
from tl_lightning.objectives.weighted_ce import weighted_cross_entropy


def plain_ce(logits, labels, weights):
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def step_times(ckpt: str, steps: int) -> dict:
    dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=32), val=DataSource(split="val", size=2),
                           max_length=1024, batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    model = load_policy(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                      lora=LoraSettings(r=8, dropout=0.0)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times: dict[str, list[float]] = {"pkt": [], "plain": []}
    for i in range(2 * steps + 4):
        name, fn = (("pkt", weighted_cross_entropy), ("plain", plain_ce))[i % 2]
        t = time.perf_counter()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        fn(logits, batch["labels"], batch["weights"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 4:  # warm-up steps excluded
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch_shape": list(batch["input_ids"].shape), "median_step_s": {k: round(v, 5) for k, v in med.items()},
            "pkt_over_plain": round(med["pkt"] / med["plain"], 4)}


def token_counts(convs, tok) -> dict:
    """One pass (every turn trained in one sequence, ending at its last trained token, as the datamodule encodes it)
    vs one copy per kept assistant turn (paper code, with MAE)."""
    fmt = PaperFormat(tok.eos_token)
    one_pass = per_turn = turns = 0
    for conv in convs:
        kept, blocked = apply_mae(conv, MAESettings())
        enc = encode_rendered(fmt.render(kept), tok, kept.tool_names, frozenset(blocked), trim_untrained_tail=True)
        one_pass += len(enc.input_ids) if enc.n_trainable else 0
        for i, m in enumerate(kept.messages):
            if m.role == "assistant" and i not in blocked:
                turns += 1
                per_turn += len(tok(fmt.render(kept, messages=kept.messages[: i + 1]).text)["input_ids"])
    return {"conversations": len(convs), "trained_turns": turns, "one_pass_tokens": one_pass,
            "per_turn_copy_tokens": per_turn, "ratio": round(per_turn / max(1, one_pass), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny", hidden=a.hidden, layers=2))
        from tl_lightning.core.checkpoints import load_tokenizer

        tok = load_tokenizer(ckpt)
        out = {"machine": f"{torch.get_num_threads()} CPU threads",
               "model": f"tiny Llama h{a.hidden} L2, NF4 + LoRA r8",
               "step_time": step_times(ckpt, a.steps),
               "tokens_per_epoch": {"toolworld_train_400": token_counts(DataSource(size=400).load()[0], tok)}}
        shared = Path(a.shared)
        if shared.is_dir():
            out["tokens_per_epoch"]["rotbench_third_turn_clean"] = token_counts(
                list(load_source("rotbench", shared / "rotbench/Data/Third_Turn/clean.json")), tok)
            out["tokens_per_epoch"]["toolbench_examples"] = token_counts(
                list(load_source("toolbench", shared / "toolbench/data_example/answer")), tok)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
