"""SFT end to end on the tiny NF4 checkpoint: loss falls, only LoRA moves, the exported adapter reloads exactly,
and the CLI turns user mistakes into one line."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from tl_lightning.callbacks import HFExport
from tl_lightning.data.sft_datamodule import DataSource, ToolSFTDataModule
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.sft import SFTSystem

ROOT = Path(__file__).resolve().parents[1]


def test_sft_trains_lora_only_and_adapter_reloads(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=8, alpha=16, dropout=0.0)),
                       optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), warmup_ratio=0.0, schedule="constant")
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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_cli_user_errors_are_one_line(tiny_checkpoint, tmp_path):
    base = ["fit", "--config", "configs/quickstart.yaml", f"--model.init_args.policy.checkpoint={tiny_checkpoint}",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.max_steps=1"]
    r = _cli(*base, "--data.init_args.train.format=conversations", "--data.init_args.train.path=/no/such.json")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == "error: data path not found: /no/such.json (check the path in your config)"
    r = _cli(*base, "--data.init_args.train.sizee=3")
    assert r.returncode == 2 and "sizee" in r.stderr
    r = _cli(*base, "--model.init_args.policy.checkpoint=./missing-model")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: model checkpoint not found: ./missing-model")
    if not torch.cuda.is_available():
        r = _cli(*base, "--trainer.accelerator=gpu")
        assert r.returncode == 2 and "CUDA is not available" in r.stderr.strip().splitlines()[-1]
