"""CUDA: NF4 load of the tiny checkpoint + one LoRA optimizer step (pytest -m gpu on a GPU machine)."""

import pytest
import torch

from tl_lightning.models.loading import LoraSettings, ModelSettings, load_policy

pytestmark = pytest.mark.gpu


def test_nf4_lora_step_on_cuda(tiny_checkpoint):
    import bitsandbytes as bnb

    model = load_policy(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="bfloat16",
                                      lora=LoraSettings(r=8, dropout=0.0)), device="cuda")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids = torch.randint(3, 500, (2, 32), device="cuda")
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    print(f"device={torch.cuda.get_device_name()} loss={loss.item():.4f} "
          f"peak_mem_MiB={torch.cuda.max_memory_allocated() / 2**20:.1f}")
