"""Data-parallel RL on CPU: 2-process gloo DDP GRPO splits each global prompt batch between the ranks (disjoint
prompts), samples what one process samples (a rank's rollout is its chunks of the global batch), and takes the
same update as one process on the union batch."""

import functools
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from tl_lightning.data.prompt_datamodule import ToolPromptDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.engine import HFGenerate
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.objectives.estimators import GRPO
from tl_lightning.objectives.kl import FixedKLController
from tl_lightning.systems.ppo import KLSettings, PPOSystem
from tl_lightning.systems.schedules import WarmupConstant

PROMPTS_PER_RANK, GROUP, ITERATIONS = 2, 2, 2


class RankLog(L.Callback):
    """Each rank writes the prompt ids and responses it trained on, and its final policy adapter (the spawned ranks
    share only the disk)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.root / f"rank{trainer.global_rank}.jsonl", "a") as f:
            for s in pl_module.last_samples:
                f.write(json.dumps({"iteration": s["iteration"], "prompt": s["prompt_id"],
                                    "response": s["response"]}) + "\n")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(_policy(pl_module), self.root / f"rank{trainer.global_rank}.pt")


class DriftedPolicy(PPOSystem):
    """The policy adapter starts away from the reference (the base), so that the KL loss has a gradient: a random
    tiny model's responses are all format errors, whose equal rewards give GRPO no advantage to learn from."""

    def configure_model(self) -> None:
        first = self.model is None
        super().configure_model()
        if first:
            g = torch.Generator().manual_seed(0)
            for n, p in sorted(self.model.named_parameters()):
                if "lora_B" in n and ".default." in n:
                    with torch.no_grad():
                        p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _system(ckpt: str) -> PPOSystem:
    return DriftedPolicy(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                       lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                         advantage=GRPO(group_size=GROUP), critic=None,
                         kl=KLSettings(FixedKLController(0.1), placement="loss"),
                         generation={"max_new_tokens": 8, "do_sample": True, "temperature": 0.9},
                         # one minibatch per epoch; one process generates in chunks the size of a rank's rollout
                         ppo={"ppo_epochs": 2, "minibatch_size": 64, "rollout_chunk_size": PROMPTS_PER_RANK * GROUP},
                         # SGD, not Adam: Adam is invariant to gradient scale and would hide a normalisation error
                         optimizer=functools.partial(torch.optim.SGD, lr=1.0), actor_lr=1.0,
                         lr_scheduler=WarmupConstant, rollout_seed=3,
                         # transformers generate: with DecodeLoop the ranks and the one process differ by ~1e-6 in
                         # the update (issue #26 note: not yet explained), above this test's rtol
                         rollout_engine=HFGenerate())


def _policy(system: PPOSystem) -> dict:
    return {n: p.detach().clone() for n, p in system.named_parameters() if "lora_" in n and ".default." in n}


def _fit(ckpt: str, root: Path, devices: int) -> tuple[dict, list[dict]]:
    root.mkdir(parents=True)
    L.seed_everything(0)
    system = _system(ckpt)
    dm = ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=40), batch_size=PROMPTS_PER_RANK * 2 // devices,
                              shuffle_seed=1)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        max_epochs=1, limit_train_batches=ITERATIONS, callbacks=[RankLog(root)],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(system, dm)
    params = torch.load(root / "rank0.pt")
    samples = [json.loads(line) for f in sorted(root.glob("rank*.jsonl")) for line in open(f)]
    return params, samples


def test_ddp_grpo_ranks_split_prompts_and_match_one_process(tiny_checkpoint, tmp_path):
    single, single_samples = _fit(tiny_checkpoint, tmp_path / "single", devices=1)
    ddp, ddp_samples = _fit(tiny_checkpoint, tmp_path / "ddp", devices=2)
    start = _system(tiny_checkpoint)
    start.configure_model()
    ddp_start = _policy(start)
    rank0 = [json.loads(x) for x in open(tmp_path / "ddp" / "rank0.jsonl")]
    rank1 = [json.loads(x) for x in open(tmp_path / "ddp" / "rank1.jsonl")]
    for it in range(ITERATIONS):
        p0 = {s["prompt"] for s in rank0 if s["iteration"] == it}
        p1 = {s["prompt"] for s in rank1 if s["iteration"] == it}
        assert len(p0) == len(p1) == PROMPTS_PER_RANK and not p0 & p1  # disjoint prompts
    # together the ranks saw, and sampled, exactly what one process did on the union batch
    key = lambda s: (s["iteration"], s["prompt"], s["response"])  # noqa: E731
    assert sorted(map(key, ddp_samples)) == sorted(map(key, single_samples))
    # and took the same update (the ranks' gradients average to the union batch's token-mean gradient)
    assert any(not torch.equal(single[n], ddp_start[n]) for n in single)  # it moved
    for n in single:
        torch.testing.assert_close(ddp[n], single[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_prompt_stream_slices_the_global_batch(world):
    from tl_lightning.data.batches import prompt_item
    from tl_lightning.data.prompt_datamodule import PromptStream
    from tl_lightning.format.schema import Conversation

    items = [prompt_item([i], Conversation(id=str(i), tools=(), messages=())) for i in range(10)]
    one = iter(PromptStream(items, 2 * world, seed=4, start=6))
    ranks = [iter(PromptStream(items, 2, seed=4, start=6, rank=r, world_size=world)) for r in range(world)]
    for _ in range(5):  # across pass boundaries (10 items, new permutation each pass)
        union = [i for it in ranks for i in next(it).input_ids]
        assert union == next(one).input_ids
