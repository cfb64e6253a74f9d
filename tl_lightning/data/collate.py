"""SFT batch layouts: right-padded rows, or packed rows with per-sequence position ids (same loss and gradients)."""

from __future__ import annotations

import torch

from tl_lightning.core.constants import IGNORE_INDEX


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: example indices grouped into rows of at most `capacity` tokens (longest rows first)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        j = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if j is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[j].append(i)
            room[j] -= lengths[i]
    return rows


def pack_sft_batch(examples: list[dict], pad_id: int, capacity: int) -> dict[str, torch.Tensor]:
    """Concatenate a batch's examples into as few rows of <= `capacity` tokens as fit, with per-example
    `position_ids` (restarting at 0). transformers turns restarting positions with no 2-D attention mask into a
    block-diagonal causal mask (flash-attention: variable-length kernels), so no token attends across examples.
    Each example's first label is ignored, as in the padded batch where the first position is never a target:
    the loss and gradients equal the padded batch's (tested)."""
    merged = []
    for row in pack_rows([len(e["input_ids"]) for e in examples], max(capacity,
                                                                      max(len(e["input_ids"]) for e in examples))):
        m = {"input_ids": [], "labels": [], "weights": [], "key_mask": [], "position_ids": []}
        for i in row:
            e = examples[i]
            m["input_ids"] += e["input_ids"]
            m["labels"] += [IGNORE_INDEX] + e["labels"][1:]
            m["weights"] += [0.0] + e["weights"][1:]
            m["key_mask"] += [False] + e["key_mask"][1:]
            m["position_ids"] += list(range(len(e["input_ids"])))
        merged.append(m)
    batch = pad_sft_batch(merged, pad_id)
    t = batch["input_ids"].size(1)
    # padding continues the last example's positions: causal, after every real token, and never a target
    batch["position_ids"] = torch.tensor([_continue_positions(m["position_ids"], t) for m in merged])
    return batch


def _continue_positions(positions: list[int], width: int) -> list[int]:
    last = positions[-1]
    return positions + list(range(last + 1, last + 1 + width - len(positions)))


def pad_sft_batch(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad: input_ids with `pad_id`, labels with IGNORE_INDEX, weights with 0, key_mask with False."""
    t = max(len(e["input_ids"]) for e in examples)

    def pad(key: str, value, dtype):
        return torch.tensor([e[key] + [value] * (t - len(e[key])) for e in examples], dtype=dtype)

    return {"input_ids": pad("input_ids", pad_id, torch.long), "labels": pad("labels", IGNORE_INDEX, torch.long),
            "weights": pad("weights", 0.0, torch.float32), "key_mask": pad("key_mask", False, torch.bool),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (t - len(e["input_ids"]))
                                            for e in examples])}
