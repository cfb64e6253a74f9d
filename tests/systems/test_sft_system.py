"""SFT end to end on the tiny NF4 checkpoint: loss falls, only LoRA moves, the exported adapter reloads exactly."""

from pathlib import Path

import lightning as L
import torch

from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.callbacks import HFExport
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
    assert (Path(trainer.log_dir) / "data_stats.json").is_file() and (export / "data_stats.json").is_file()
    card = (export / "README.md").read_text()  # our model card, not peft's template
    assert card.startswith("---\nbase_model: ") and "library_name: peft" in card and "More Information" not in card
    from tl_lightning.core.checkpoints import load_tokenizer
    from tl_lightning.data.tokenization import exported_chat_template

    exported = load_tokenizer(str(export))  # a paper-format run: the chat template renders the paper format
    assert exported.chat_template == exported_chat_template(exported) != system.tokenizer.chat_template
    reply = exported.parse_response(" f(x='a')" + exported.eos_token, prefix="System: \nUser: hi\nAssistant:")
    assert reply["tool_calls"] == [{"type": "function", "function": {"name": "f", "arguments": {"x": "a"}}}]
    from peft import PeftModel

    from tl_lightning.models.loading import load_base_model

    base = load_base_model(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32"))
    reloaded = PeftModel.from_pretrained(base, str(export)).eval()
    with torch.no_grad():
        logits2 = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits2, logits)


def _final_lora(ckpt, root, batch_size, accumulate):
    import functools

    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                       optimizer=functools.partial(torch.optim.SGD, lr=1.0), lr_scheduler=CONSTANT)  # SGD: scale-exact
    dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=8), val=DataSource(split="val", size=2),
                           max_length=900, batch_size=batch_size, shuffle=False, group_by_length=False)
    L.Trainer(accelerator="cpu", max_steps=2, accumulate_grad_batches=accumulate, logger=False, limit_val_batches=0,
              enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
              default_root_dir=root).fit(system, dm)
    return {n: p.detach().clone() for n, p in system.model.named_parameters() if p.requires_grad}


def test_gradient_accumulation_normalises_over_the_whole_step(tiny_checkpoint, tmp_path):
    """Batch 4 in one micro-batch == batch 2 accumulated twice: Σ w·CE / Σ w over the step's micro-batches, not the
    mean of per-micro-batch means (which weights a short micro-batch's tokens more)."""
    whole = _final_lora(tiny_checkpoint, tmp_path / "a", batch_size=4, accumulate=1)
    split = _final_lora(tiny_checkpoint, tmp_path / "b", batch_size=2, accumulate=2)
    for n in whole:
        torch.testing.assert_close(split[n], whole[n], rtol=1e-4, atol=1e-6)
