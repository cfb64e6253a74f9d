"""Resume from a Lightning checkpoint, merge-export to plain transformers, and the mask inspector."""

from pathlib import Path

import lightning as L
import torch

from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.schedules import WarmupConstant
from tl_lightning.systems.sft import SFTSystem

CONSTANT = WarmupConstant  # no warmup, constant LR


def _system(ckpt, quantization="nf4"):
    return SFTSystem(ModelSettings(checkpoint=ckpt, quantization=quantization, compute_dtype="float32",
                                   lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                     optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2), lr_scheduler=CONSTANT)


def _dm(ckpt):
    return ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=16), val=DataSource(split="val", size=2),
                             max_length=768, batch_size=2)


def _trainer(root, steps, **kw):
    return L.Trainer(accelerator="cpu", max_steps=steps, default_root_dir=root, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, **kw)


def _lora(system):
    return {n: p.detach().clone() for n, p in system.model.named_parameters() if p.requires_grad}


def test_resume_restores_adapter_optimizer_and_step(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    first = _system(tiny_checkpoint)
    t1 = _trainer(tmp_path, 3, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    t1.fit(first, _dm(tiny_checkpoint))
    ckpt = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])  # adapter only, no 4-bit base
    saved = _lora(first)
    resumed = _system(tiny_checkpoint)
    seen = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["step"] = trainer.global_step
            seen["lora"] = _lora(pl_module)

    _trainer(tmp_path, 5, callbacks=[Probe()], enable_checkpointing=False).fit(
        resumed, _dm(tiny_checkpoint), ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert seen["step"] == 3
    for n, v in saved.items():
        torch.testing.assert_close(seen["lora"][n], v)
    assert any(not torch.equal(v, _lora(resumed)[n]) for n, v in saved.items())  # it kept training


def test_merge_export_loads_in_plain_transformers(tiny_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    from tl_lightning.cli.export import merge_adapter

    system = _system(tiny_checkpoint, quantization=None)
    system.configure_model()
    for n, p in system.model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    system.model.save_pretrained(tmp_path / "adapter")
    out = merge_adapter(tmp_path / "adapter", tmp_path / "merged", base=tiny_checkpoint, dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    ids = torch.randint(3, 500, (1, 20))
    system.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, system.model(input_ids=ids).logits, rtol=1e-4,
                                   atol=1e-4)
    assert (Path(out) / "tokenizer.json").is_file()
    assert "library_name: transformers" in (Path(out) / "README.md").read_text()  # the merged model's card


def test_inspector_prints_table_and_fails_loudly(tiny_checkpoint, tmp_path, capsys):
    from tl_lightning.cli.inspect import print_table, token_rows

    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=16), max_length=2048)
    dm.load_tokenizer()
    convs, _ = dm.train_source.load()
    conv = next(c for c in convs if c.meta["errors"])
    rows, problems = token_rows(dm, conv)
    assert not problems
    print_table(conv.id, rows, all_tokens=False)
    out = capsys.readouterr().out
    assert "blocked" in out and " K " in out and "totals:" in out
    short = ToolSFTDataModule(tokenizer=tiny_checkpoint, max_length=40)  # truncation leaves nothing to train
    short.load_tokenizer()
    _, problems = token_rows(short, conv)
    assert any("no trained token" in p for p in problems)
