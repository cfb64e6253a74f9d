"""SFT end to end on the tiny NF4 checkpoint: loss falls, only LoRA moves, the exported adapter reloads exactly."""

from pathlib import Path

import lightning as L
import torch

from tl_lightning.callbacks import HFExport
from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.schedules import WarmupConstant
from tl_lightning.systems.sft import SFTSystem

CONSTANT = WarmupConstant  # no warmup, constant LR


def test_sft_trains_lora_only_and_adapter_reloads(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=8, alpha=16, dropout=0.0)),
                       optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), lr_scheduler=CONSTANT)
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=24), val=DataSource(split="val", size=4),
                           max_length=768, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=12, logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        callbacks=[HFExport()], enable_progress_bar=False, num_sanity_val_steps=1,
                        enable_checkpointing=False)
    system.configure_model()
    before = {n: p.detach().clone() for n, p in system.model.named_parameters()}
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        loss0 = system._losses(batch)["weighted_loss"].item()
    trainer.fit(system, dm)
    after = dict(system.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and all("lora_" in n for n in changed)
    assert all("lora_" in n or not p.requires_grad for n, p in after.items())
    system.model.eval()
    with torch.no_grad():
        loss1 = system._losses(batch)["weighted_loss"].item()
        logits = system.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert loss1 < loss0

    export = Path(trainer.log_dir) / "hf" / "final"
    assert (export / "adapter_config.json").is_file() and (export / "tokenizer.json").is_file()
    assert (Path(trainer.log_dir) / "data_stats.json").is_file()
    from peft import PeftModel

    from tl_lightning.models.loading import load_base_model

    base = load_base_model(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32"))
    reloaded = PeftModel.from_pretrained(base, str(export)).eval()
    with torch.no_grad():
        logits2 = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits2, logits)
