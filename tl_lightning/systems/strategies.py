"""FSDP for transformer policies, configurable from YAML.

Lightning's `FSDPStrategy` takes its wrap policy as Python classes, which a config file cannot hold; this subclass
takes dotted class paths instead and fixes what LoRA needs (`use_orig_params=True`: frozen base and trainable
adapter weights share FSDP's flat parameters). Use it through `configs/strategies/fsdp.yaml`.
"""

from __future__ import annotations

import importlib
from typing import Literal

import torch
from lightning.pytorch.strategies import FSDPStrategy

from tl_lightning.core.errors import UserError

LLAMA_BLOCK = "transformers.models.llama.modeling_llama.LlamaDecoderLayer"


def import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"cannot import the layer class {path!r} for FSDP wrapping: {e}") from None


class BlockFSDPStrategy(FSDPStrategy):
    """FSDP with one shard unit per transformer block.

    Args:
        blocks: dotted paths of the block classes to wrap (and to checkpoint, with `activation_checkpointing`).
        activation_checkpointing: recompute each block's activations in the backward pass.
        sharding_strategy: "FULL_SHARD" (ZeRO-3), "SHARD_GRAD_OP" (ZeRO-2), "NO_SHARD" or "HYBRID_SHARD".
        state_dict_type: "full" (one checkpoint file, gathered on rank 0) or "sharded".
        cpu_offload: keep parameters and gradients on the CPU between uses.
    """

    def __init__(self, blocks: list[str] = [LLAMA_BLOCK], activation_checkpointing: bool = False,
                 sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD",
                 state_dict_type: Literal["full", "sharded"] = "full", cpu_offload: bool = False, **kwargs) -> None:
        classes = {import_class(p) for p in blocks}
        super().__init__(auto_wrap_policy=classes,
                         activation_checkpointing_policy=classes if activation_checkpointing else None,
                         sharding_strategy=sharding_strategy, state_dict_type=state_dict_type, cpu_offload=cpu_offload,
                         use_orig_params=True, **kwargs)


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The unsharded state dict of an FSDP-wrapped `module`, on rank 0 (a collective: call it on every rank);
    None when nothing in `module` is FSDP-wrapped (then `save_pretrained` reads the weights itself)."""
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

    if not any(isinstance(m, FullyShardedDataParallel) for m in module.modules()):
        return None
    with FullyShardedDataParallel.state_dict_type(module, StateDictType.FULL_STATE_DICT,
                                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        return module.state_dict()
