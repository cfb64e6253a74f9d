"""HFExport checks the adapters it is about to write against the trained tensors, before writing anything, and every
rank takes the same decision (the FSDP gather on an H200 produced an adapter without its LoRA tensors).

The broken gather is simulated by replacing `full_state_dict` (the FSDP collective) with one that returns a damaged
state; the trainer is a stand-in whose strategy records the collective the decision goes through."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tl_lightning.core.errors import UserError
from tl_lightning.models.loading import LoraSettings, ModelSettings, load_policy
from tl_lightning.systems import callbacks
from tl_lightning.systems.callbacks import HFExport, lora_mismatch, trained_adapters


class RecordingStrategy:
    """Lightning's `strategy.broadcast` on rank `rank` of a run whose rank 0 sent `from_rank0` (rank 0: its own)."""

    def __init__(self, rank: int = 0, from_rank0=None) -> None:
        self.rank, self.from_rank0, self.broadcasts = rank, from_rank0, []
        self.model = None  # the outermost module (Lightning: the system, or its DDP / FSDP wrapper)

    def broadcast(self, obj, src: int = 0):
        self.broadcasts.append((obj, src))
        return obj if self.rank == 0 else self.from_rank0


def _trainer(root, rank=0, from_rank0=None):
    return SimpleNamespace(is_global_zero=rank == 0, log_dir=str(root), default_root_dir=str(root),
                           strategy=RecordingStrategy(rank, from_rank0))


def _system(model):
    """What HFExport reads from a LightningModule: the peft `model` (no tokenizer, no value head here)."""
    system = torch.nn.Module()
    system.model = model
    return system


def _policy(ckpt):
    return load_policy(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=4, alpha=8, dropout=0.0)))


def _train(model):
    """Give every LoRA tensor distinct values (a fresh lora_B is all zeros: a damaged copy could equal it)."""
    with torch.no_grad():
        for i, (n, p) in enumerate(model.named_parameters()):
            if "lora_" in n:
                p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) + i)


@pytest.fixture
def policy(tiny_checkpoint):
    model = _policy(tiny_checkpoint)
    _train(model)
    return model


@pytest.fixture
def ppo_policy(tiny_checkpoint, tmp_path_factory):
    """As PPOSystem builds it with an AdapterCritic: trained "default" and "critic", a frozen "reference"."""
    sft = tmp_path_factory.mktemp("sft")
    _policy(tiny_checkpoint).save_pretrained(sft)
    model = _policy(tiny_checkpoint)
    model.load_adapter(str(sft), adapter_name="reference", is_trainable=False)
    model.add_adapter("critic", model.peft_config["default"])
    model.set_adapter("default")
    _train(model)
    return model


def _export(model, root, monkeypatch, damage=None, **trainer):
    """HFExport's final export of `model`, with the gathered state damaged by `damage(state)`."""
    if damage is not None:
        monkeypatch.setattr(callbacks, "full_state_dict", lambda m: damage(dict(m.state_dict())))
    t = _trainer(root, **trainer)
    t.strategy.model = system = _system(model)
    return HFExport()._export(t, system, "final"), t


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ the pure comparison
def test_lora_mismatch_names_what_differs():
    trained = {"a.lora_A.weight": torch.tensor([[1.0, 2.0]]), "a.lora_B.weight": torch.tensor([[3.0], [4.0]])}
    assert lora_mismatch(dict(trained), trained) is None
    assert lora_mismatch({}, trained) == "2 of 2 LoRA tensors missing (first: a.lora_A.weight)"
    assert lora_mismatch({"a.lora_A.weight": torch.tensor([1.0, 2.0]), "a.lora_B.weight": trained["a.lora_B.weight"]},
                         trained) == "a.lora_A.weight has shape (2,), the trained tensor (1, 2)"
    # same keys, same shapes, one value off: 1 of 2 differs
    off = {"a.lora_A.weight": torch.tensor([[1.0, 2.5]]), "a.lora_B.weight": trained["a.lora_B.weight"]}
    assert lora_mismatch(off, trained) == "1 of 2 LoRA tensors differ from the trained ones (first: a.lora_A.weight)"
    # a lower-precision copy is compared at its own precision: bf16 rounding of the trained values is not a loss
    assert lora_mismatch({k: v.bfloat16() for k, v in trained.items()}, trained) is None


def test_trained_adapters_leave_out_the_frozen_reference(ppo_policy):
    assert trained_adapters(ppo_policy) == ["default", "critic"]


# ------------------------------------------------------------------------------------------ HFExport
def test_a_whole_export_passes_and_writes_every_trained_adapter_only(ppo_policy, tmp_path, monkeypatch):
    out, t = _export(ppo_policy, tmp_path, monkeypatch)
    assert out == tmp_path / "hf" / "final"
    files = _files(out)
    assert "adapter_model.safetensors" in files and "critic/adapter_model.safetensors" in files
    assert not any(f.startswith("reference/") for f in files)  # frozen: reloaded from the SFT adapter, not exported
    assert t.strategy.broadcasts == [(None, 0)]  # rank 0 told the others: no problem
    assert not (tmp_path / "hf" / "final.partial").exists()


def test_an_adapter_without_its_lora_tensors_is_refused_before_anything_is_written(policy, tmp_path, monkeypatch):
    def no_lora(state):  # what the FSDP gather produced on an H200
        return {k: v for k, v in state.items() if "lora_" not in k}

    n = sum("lora_" in k for k, _ in policy.named_parameters())
    with pytest.raises(UserError) as e:
        _export(policy, tmp_path, monkeypatch, no_lora)
    assert _files(tmp_path) == []  # nothing half-written
    assert f"{tmp_path / 'hf' / 'final'}: refusing to export adapter 'default': {n} of {n} LoRA tensors missing" \
        in str(e.value) and "\n" not in str(e.value)


def test_same_keys_with_wrong_contents_are_refused(policy, tmp_path, monkeypatch):
    def stale(state):  # every key there, one tensor not the trained one
        key = next(k for k in state if "lora_B" in k)
        return {**state, key: torch.zeros_like(state[key])}

    with pytest.raises(UserError, match=r"adapter 'default': 1 of \d+ LoRA tensors differ from the trained ones"):
        _export(policy, tmp_path, monkeypatch, stale)
    assert _files(tmp_path) == []


def test_a_missing_tensor_of_the_critic_adapter_is_refused(ppo_policy, tmp_path, monkeypatch):
    def critic_lost_one(state):
        key = next(k for k in state if "lora_A.critic." in k)
        return {k: v for k, v in state.items() if k != key}

    with pytest.raises(UserError, match=r"adapter 'critic': 1 of \d+ LoRA tensors missing"):
        _export(ppo_policy, tmp_path, monkeypatch, critic_lost_one)
    assert _files(tmp_path) == []


def test_the_frozen_reference_is_not_checked(ppo_policy, tmp_path, monkeypatch):
    def no_reference(state):
        return {k: v for k, v in state.items() if ".reference." not in k}

    out, _ = _export(ppo_policy, tmp_path, monkeypatch, no_reference)
    assert (out / "critic" / "adapter_model.safetensors").is_file()


def test_every_rank_raises_rank_0s_refusal(policy, tmp_path, monkeypatch):
    # rank 1 holds no gathered state (FSDP gathers on rank 0); it takes rank 0's verdict through the broadcast
    verdict = "adapter 'default': 8 of 8 LoRA tensors missing (first: a.lora_A.weight)"
    with pytest.raises(UserError) as e:
        _export(policy, tmp_path, monkeypatch, rank=1, from_rank0=verdict)
    assert str(e.value).startswith(f"{tmp_path / 'hf' / 'final'}: refusing to export {verdict}. ")
    assert _files(tmp_path) == []


def test_rank_0_sends_its_refusal_through_the_strategy(policy, tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "full_state_dict", lambda m: {})
    t = _trainer(tmp_path)
    t.strategy.model = system = _system(policy)
    with pytest.raises(UserError):
        HFExport()._export(t, system, "final")
    n = sum("lora_" in k for k, _ in policy.named_parameters())
    [(sent, src)] = t.strategy.broadcasts
    assert src == 0 and sent.startswith(f"adapter 'default': {n} of {n} LoRA tensors missing")


# ------------------------------------------------------------------------------------------ two real processes
class LosingExport(HFExport):
    """HFExport whose rank 0 gathers a state without LoRA tensors (the H200 FSDP symptom); each rank writes what its
    export did to `rank<N>.txt` instead of raising, so a rank that went on without refusing is seen, not killed."""

    def _export(self, trainer, pl_module, name):
        def lossy(model):
            return {k: v for k, v in model.state_dict().items() if "lora_" not in k} if trainer.is_global_zero else None

        gather, callbacks.full_state_dict = callbacks.full_state_dict, lossy
        try:
            outcome = f"exported to {super()._export(trainer, pl_module, name)}"
        except UserError as e:
            outcome = f"UserError: {e}"
        finally:
            callbacks.full_state_dict = gather
        (Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.txt").write_text(outcome)


def test_two_ddp_processes_both_refuse_and_write_nothing(tiny_checkpoint, tmp_path):
    import lightning as L

    from tl_lightning.data.sft_datamodule import ToolSFTDataModule
    from tl_lightning.data.sources import DataSource
    from tl_lightning.systems.sft import SFTSystem

    system = SFTSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=4), val=DataSource(split="val", size=2),
                           max_length=768, batch_size=1)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1, default_root_dir=tmp_path,
                        logger=False, limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[LosingExport()])
    trainer.fit(system, dm)
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert outcomes[0] == outcomes[1], outcomes  # one verdict: rank 1, which gathered nothing, refuses too
    assert outcomes[0].startswith(f"UserError: {tmp_path / 'hf' / 'final'}: refusing to export adapter 'default'")
    assert not (tmp_path / "hf").exists()
