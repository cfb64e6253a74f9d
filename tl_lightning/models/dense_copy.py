"""A dense sampling copy of the policy: the quantized base dequantized and the active LoRA adapter merged in, as a
plain transformers model used only to generate.

Merging LoRA into 4-bit weights breaks or drifts (TRL #4973, #3654; peft #2501); we never do it. The copy is a
separate model in a plain dtype, rebuilt from the live policy (`refresh`) whenever the policy changed. Its outputs
differ from the policy's only by rounding (dequantized NF4 is exact; the merge adds B·A·scale once instead of per
token), and RL learns from the policy's own log-probs, so the gap is logged (`rollout/logprob_gap`), never hidden.
"""

from __future__ import annotations

import torch

from tl_lightning.core.errors import UserError


def _source_weight(module: torch.nn.Module, adapter: str) -> torch.Tensor | None:
    """The dense weight a policy module stands for: dequantized base (if 4/8-bit) plus the adapter's LoRA delta
    (if the module is a LoRA layer and the adapter is active on it); None for a plain module (copied as is)."""
    from peft.utils.integrations import dequantize_bnb_weight

    base = getattr(module, "base_layer", module)
    weight = getattr(base, "weight", None)
    if weight is None:
        return None
    quantized = type(weight).__name__ in ("Params4bit", "Int8Params")
    if not quantized and base is module:
        return None
    dense = dequantize_bnb_weight(weight, getattr(weight, "quant_state", None)) if quantized else weight.detach()
    if base is not module and adapter in getattr(module, "lora_A", {}) and not module.disable_adapters:
        dense = dense.float() + module.get_delta_weight(adapter).float()
    return dense


def dense_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """What a dense copy of `model` in `dtype` holds: every base parameter at full size, once (4-bit packed weights
    count their unpacked element count)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    size = torch.empty((), dtype=dtype).element_size()
    total, seen = 0, set()
    for module_name, module in base.named_modules():
        for p in module.parameters(recurse=False):
            if "lora_" in module_name or id(p) in seen:  # adapters are merged; a tied head counts once
                continue
            seen.add(id(p))
            shape = getattr(getattr(p, "quant_state", None), "shape", None)
            total += (shape.numel() if shape is not None else p.numel()) * size
    return total


def store_column_major(model: torch.nn.Module) -> None:
    """Store every `nn.Linear` weight column-major: the same (out x in) values, laid out as its transpose. `F.linear`
    then multiplies by a contiguous (in x out) matrix, which MKL's fp32 GEMM streams faster for the few rows of a
    decode step, where reading the weights is the cost (`DecodeLoop.column_major_copy` has the numbers). Values
    are unchanged; a product may sum in another order (float rounding)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data = module.weight.data.t().contiguous().t()


class DenseCopy:
    """Keeps a dense copy of a (peft, possibly quantized) policy for sampling.

    Args:
        dtype: dtype of the copy's weights and compute.
        max_gib: refuse (one line) when the copy would exceed this many GiB; None: no limit.
        column_major: store the copy's linear weights column-major (`store_column_major`); refreshes keep it.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, max_gib: float | None = None,
                 column_major: bool = False) -> None:
        self.dtype, self.max_gib, self.column_major = dtype, max_gib, column_major
        self.model: torch.nn.Module | None = None

    def refresh(self, policy: torch.nn.Module, adapter: str = "default") -> torch.nn.Module:
        """Rebuild (or overwrite in place) the copy from the policy's current weights; returns it."""
        need = dense_bytes(policy, self.dtype)
        if self.max_gib is not None and need > self.max_gib * 2**30:
            raise UserError(f"the dense sampling copy needs {need / 2**30:.1f} GiB ({self.dtype}), over its budget of "
                            f"{self.max_gib} GiB: use the rollout engine without a sampling copy, or raise max_gib")
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        device = next(base.parameters()).device
        if self.model is None:
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                copy = AutoModelForCausalLM.from_config(base.config, dtype=self.dtype)
            self.model = copy.to_empty(device=device).eval()
            self.model.generation_config = base.generation_config
            self.model.tie_weights()  # to_empty unties: a tied output layer would be a second embedding
            if self.column_major:
                store_column_major(self.model)  # `copy_` below writes into this layout
        with torch.no_grad():
            for name, target in self.model.named_modules():
                params = dict(target.named_parameters(recurse=False))
                if not params:
                    continue
                source = base.get_submodule(name)
                merged = _source_weight(source, adapter)
                for pname, p in params.items():
                    value = merged if pname == "weight" and merged is not None else \
                        getattr(getattr(source, "base_layer", source), pname)
                    p.copy_(value.to(self.dtype).reshape(p.shape))
            for name, buf in self.model.named_buffers():  # rotary inverse frequencies and the like
                buf.copy_(base.get_buffer(name))
        return self.model
