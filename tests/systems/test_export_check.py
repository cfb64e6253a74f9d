"""HFExport refuses an adapter that lost its LoRA tensors (as the FSDP export did on an H200)."""

import pytest

from tl_lightning.callbacks import check_lora_saved
from tl_lightning.errors import UserError
from tl_lightning.models.loading import LoraSettings, ModelSettings, load_policy


def test_an_adapter_without_its_lora_tensors_is_refused(tiny_checkpoint, tmp_path):
    model = load_policy(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                      lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    model.save_pretrained(tmp_path / "whole")
    check_lora_saved(model, tmp_path / "whole")  # every LoRA tensor is there
    no_lora = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    model.save_pretrained(tmp_path / "lost", state_dict=no_lora)  # what the FSDP gather produced
    with pytest.raises(UserError, match="holds 0 of"):
        check_lora_saved(model, tmp_path / "lost")
