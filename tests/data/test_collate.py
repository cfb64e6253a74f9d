"""Packed SFT batches: no attention across examples, and the same loss and gradients as the padded batch."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.collate import pack_rows, pack_sft_batch, pad_sft_batch
from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.sft import SFTSystem


def test_pack_rows_first_fit_decreasing_by_hand():
    # lengths 5, 3, 4, 2 into rows of 7: 5 → row0 (room 2); 4 → row1 (room 3); 3 → row1 (room 0); 2 → row0 (room 0)
    assert pack_rows([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]


@pytest.mark.parametrize("capacity", [1, 6, 10, 100])
def test_pack_rows_is_a_partition_within_capacity(capacity):
    lengths = [3, 1, 4, 1, 5, 9, 2, 6]
    rows = pack_rows(lengths, max(capacity, max(lengths)))
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= max(capacity, max(lengths)) for r in rows)


def _examples():
    def mk(n, start):
        return {"input_ids": list(range(start, start + n)),
                "labels": [IGNORE_INDEX] + list(range(start + 1, start + n)),
                "weights": [0.0] + [1.0] * (n - 1), "key_mask": [False] * n}

    return [mk(4, 10), mk(3, 20), mk(2, 30)]


def test_packed_batch_layout_by_hand():
    b = pack_sft_batch(_examples(), pad_id=0, capacity=7)
    assert b["input_ids"].tolist() == [[10, 11, 12, 13, 20, 21, 22], [30, 31, 0, 0, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6]]
    assert b["labels"][0].tolist() == [IGNORE_INDEX, 11, 12, 13, IGNORE_INDEX, 21, 22]
    assert b["attention_mask"].sum().item() == 9  # real tokens, for throughput logging


def test_packed_loss_and_gradients_equal_padded(tiny_checkpoint):
    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=8, alpha=16, dropout=0.0)))
    system.configure_model()
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=6), val=DataSource(split="val", size=2),
                           max_length=2048, batch_size=6)
    dm.setup()
    examples = dm.datasets["train"]
    padded = pad_sft_batch(examples, dm.tok.pad_token_id)
    packed = pack_sft_batch(examples, dm.tok.pad_token_id, capacity=2048)
    assert packed["input_ids"].size(0) < padded["input_ids"].size(0)  # several examples share a row
    params = [p for p in system.parameters() if p.requires_grad]
    results = []
    for batch in (padded, packed):
        out = system._losses(batch)
        grads = torch.autograd.grad(out["weighted_loss"], params)
        results.append((out, grads))
    (a, ga), (b, gb) = results
    for k in ("weighted_loss", "loss", "token_acc", "key_token_acc", "trained_tokens"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-6)


def test_packing_flag_switches_the_collate(tiny_checkpoint):
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=8), val=DataSource(split="val", size=2),
                           max_length=4096, batch_size=4, packing=True)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert "position_ids" in batch and batch["input_ids"].size(0) < 4


def _full_logits_reference(model, batch: dict) -> dict[str, torch.Tensor]:
    """The SFT loss and metrics written out from the model's full logits (every position): what `SFTSystem._losses`
    must equal. Position t predicts token t + 1."""
    inputs = {"position_ids": batch["position_ids"]} if "position_ids" in batch else \
        {"attention_mask": batch["attention_mask"]}
    logits = model(input_ids=batch["input_ids"], use_cache=False, **inputs).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    trained = labels != IGNORE_INDEX
    logits, targets = logits[trained], labels[trained]
    ce = F.cross_entropy(logits, targets, reduction="none")
    w = batch["weights"][:, 1:][trained].float()
    correct = logits.argmax(-1) == targets
    key = batch["key_mask"][:, 1:][trained]
    return {"weighted_loss": (ce * w).sum() / w.sum(), "weighted_sum": (ce * w).sum(), "weight_total": w.sum(),
            "loss": ce.mean(), "token_acc": correct.float().mean(), "key_token_acc": correct[key].float().mean(),
            "trained_tokens": trained.sum()}


@pytest.mark.parametrize("packed", [False, True])
def test_sft_loss_equals_the_full_logits_reference(tiny_checkpoint, packed):
    """The one SFT loss path (final hidden states, head on trained positions only) gives the loss, metrics and
    gradients written out from full logits: all trained positions in one head call (None) and a few at a time
    (1, 7), on padded and packed rows."""
    L.seed_everything(0)
    settings = ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                             lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    system = SFTSystem(settings)
    system.configure_model()
    for n, p in system.named_parameters():  # a trained adapter, so that LoRA changes the logits and gets gradients
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(len(n)))
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=4), val=DataSource(split="val", size=2),
                           max_length=2048, batch_size=4)
    dm.setup()
    examples = dm.datasets["train"]
    pad = dm.tok.pad_token_id
    batch = pack_sft_batch(examples, pad, 2048) if packed else pad_sft_batch(examples, pad)
    params = [p for p in system.parameters() if p.requires_grad]
    ref = _full_logits_reference(system.model, batch)
    assert (batch["key_mask"][:, 1:] & (batch["labels"][:, 1:] != IGNORE_INDEX)).any()  # key accuracy is compared
    ref_grads = torch.autograd.grad(ref["weighted_sum"], params)
    for chunk in (None, 1, 7):
        system.hparams.loss_chunk_size = chunk
        out = system._losses(batch)
        for k in ref:
            torch.testing.assert_close(out[k].float(), ref[k].float(), rtol=1e-5, atol=1e-5, msg=f"{k}, chunk {chunk}")
        for x, y in zip(torch.autograd.grad(out["weighted_sum"], params), ref_grads):
            torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-5)
