"""FSDP export helpers that run without a GPU (the gather itself: tests/gpu/test_fsdp_cuda.py)."""

import torch

from tl_lightning.strategies import full_state_dict, unwrapped_name


def test_unwrapped_name_drops_the_fsdp_and_checkpoint_segments():
    name = "_fsdp_wrapped_module.model.base_model.model.model.layers.0._fsdp_wrapped_module." \
           "_checkpoint_wrapped_module.self_attn.q_proj.lora_A.default.weight"
    assert unwrapped_name(name) == "model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    assert unwrapped_name("lm_head.weight") == "lm_head.weight" and unwrapped_name("") == ""


def test_nothing_to_gather_without_fsdp():
    inner = torch.nn.Linear(2, 2)
    outer = torch.nn.Sequential(inner)
    assert full_state_dict(inner) is None and full_state_dict(inner, root=outer) is None
