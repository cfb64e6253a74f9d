"""The one model-loading path, for a tiny local checkpoint and a 7B hub model alike:

    AutoModelForCausalLM.from_pretrained(checkpoint, quantization_config=BitsAndBytesConfig(...)) + AutoTokenizer
    → (CPU) disable bitsandbytes' AVX512-BF16 repacking → prepare_model_for_kbit_training → peft LoRA.

bitsandbytes and peft are imported lazily inside the functions that need them (GPU-only code optional by
construction). Every user mistake ends in a one-line `UserError`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from tl_lightning.core.checkpoints import CheckpointBuilder, ensure_checkpoint, resolve_checkpoint
from tl_lightning.core.errors import UserError

log = logging.getLogger(__name__)
Quantization = Literal["nf4", "int8", "none"] | None
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft `LoraConfig`)."""

    r: int = 16
    """Rank of the update matrices."""
    alpha: int = 32
    """Scaling numerator (`lora_alpha`); the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or "all-linear" (every linear layer except the output head)."""
    modules_to_save: list[str] | None = None
    """Modules trained in full and saved with the adapter (e.g. ["lm_head"] for a randomly initialised head)."""

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise UserError(f"lora.r must be positive, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ModelSettings:
    """What to load and how. Shared by the SFT, PPO and evaluation systems."""

    checkpoint: str = "codellama/CodeLlama-7b-hf"
    """A hub id or a local directory saved with `save_pretrained`."""
    build: CheckpointBuilder | None = None
    """Builds `checkpoint` on first use when it is a missing local directory (e.g. `tl_lightning.models.tiny.TinyLlama`
    or `tl_lightning.models.pretrained.GGUFCheckpoint`); null: the checkpoint must exist."""
    quantization: Quantization = "nf4"
    """"nf4" (4-bit NormalFloat, QLoRA), "int8" (LLM.int8), or null / "none" for full precision ("none" exists
    because jsonargparse cannot set a nested key to null from the command line)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """dtype of the matmuls (and of the non-quantized weights)."""
    double_quant: bool = True
    """NF4 double quantization (quantize the quantization constants; saves ~0.4 bit/param)."""
    quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = "uint8"
    """dtype the packed 4-bit weights are stored in. FSDP needs it equal to compute_dtype (one dtype per flat
    parameter); configs/strategies/fsdp.yaml sets it."""
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    """LoRA settings; null trains all weights (only possible without quantization)."""
    adapter: str | None = None
    """An existing PEFT adapter directory to start from (e.g. the SFT adapter for PPO); trained further."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% more compute."""
    trust_remote_code: bool = False
    """Allow model code from the hub; off unless you trust the repository."""
    compile: bool = False
    """torch.compile each decoder layer in place (regional compilation: one graph reused by every layer, state-dict
    keys unchanged). Training only; measured by `benchmarks/compile.py` (see the README before turning it on)."""

    def __post_init__(self) -> None:
        if self.quantization == "none":
            self.quantization = None
        if self.quantization not in ("nf4", "int8", None):
            raise UserError(f"quantization must be nf4, int8 or null, got {self.quantization!r}")


def quantization_config(quantization: Quantization, compute_dtype: torch.dtype, double_quant: bool = True,
                        quant_storage: str = "uint8"):
    if quantization is None:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"quantization: {quantization} needs bitsandbytes: `pip install bitsandbytes==0.50.2` "
                        "(or set quantization: null)")
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_quant_storage=getattr(torch, quant_storage))


def disable_cpu_bf16_repack(model: torch.nn.Module) -> int:
    """Keep bitsandbytes from repacking 4-bit weights into its inference-only CPU format.

    On AVX512-BF16 CPUs, any eval-mode no-grad forward of a `Linear4bit` (a sanity/validation step, a PPO
    rollout) repacks the weight in place; later backward passes then go through `gemv_4bit`, which has no autograd
    kernel, and LoRA gradients are silently wrong (~100% error; ../shared/docs/env-notes.md §2). Harmless on GPU
    (the condition checks the device). Returns how many layers were patched.
    """
    if importlib.util.find_spec("bitsandbytes") is None:
        return 0
    import bitsandbytes as bnb

    n = 0
    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_base_model(settings: ModelSettings, device: torch.device | str = "cpu"):
    """`from_pretrained` with the quantization config, placed on `device` (bitsandbytes quantizes on load)."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    if settings.quantization and device.type not in ("cpu", "cuda", "xpu"):
        raise UserError(f"quantization: {settings.quantization} is not supported on {device.type}; use null")
    dtype = DTYPES[settings.compute_dtype]
    model = AutoModelForCausalLM.from_pretrained(
        resolve_checkpoint(settings.checkpoint), dtype=dtype,
        quantization_config=quantization_config(settings.quantization, dtype, settings.double_quant,
                                                settings.quant_storage),
        device_map={"": device} if settings.quantization else None, trust_remote_code=settings.trust_remote_code)
    if settings.quantization:
        disable_cpu_bf16_repack(model)
    return model


def prepare_for_training(model, settings: ModelSettings):
    """Freeze the base, add (or load) the LoRA adapter, enable gradient checkpointing; returns the trainable model."""
    if settings.lora is None and settings.adapter is None:
        if settings.quantization:
            raise UserError("a quantized model cannot be fully fine-tuned: set lora (or quantization: null)")
        if settings.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if settings.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if settings.adapter is not None:
        return PeftModel.from_pretrained(model, str(check_adapter_dir(settings.adapter)), is_trainable=True)
    lora = settings.lora
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=lora.target_modules, modules_to_save=lora.modules_to_save, task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def check_adapter_dir(adapter: str) -> Path:
    """The adapter directory, or a one-line `UserError` naming the path (never a hub lookup for a typo)."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise UserError(f"adapter directory not found: {adapter} (expected the hf/final folder of a run, e.g. "
                        "runs/quickstart/sft/version_0/hf/final)")
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"adapter directory {adapter} has no adapter_config.json (expected an hf/<step> folder)")
    return path


def check_model_paths(settings: ModelSettings) -> None:
    """Fail in one line, before any loading, on a checkpoint that is neither found nor built on first use, and on a
    missing adapter directory (the CLI calls this before the trainer starts)."""
    if settings.build is None:
        resolve_checkpoint(settings.checkpoint)
    if settings.adapter is not None:
        check_adapter_dir(settings.adapter)


def prepare_checkpoint(settings: ModelSettings) -> str:
    """Build the checkpoint if it is missing and `settings.build` says how (Lightning's `prepare_data` step)."""
    return ensure_checkpoint(settings.checkpoint, settings.build)


def load_policy(settings: ModelSettings, device: torch.device | str = "cpu") -> Any:
    """Base model (quantized as configured) + LoRA, in train mode (HF loads models in eval mode)."""
    model = prepare_for_training(load_base_model(settings, device), settings)
    model.train()
    if settings.compile:
        compile_decoder_layers(model)
    return model


def _softcap(cap: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: torch.tanh(logits / cap) * cap


def _times(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: logits * scale


def _divided_by(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: logits / scale


# What a causal LM's forward does to the head's output before returning logits, by class: (config attribute, the
# transform its value gives), the same operations in the same order as transformers' modeling_*.py (checked against
# transformers 5.23; tests/models/test_loading.py compares each family with model(...).logits).
_POSTPROCESSED_CLASSES = {
    **dict.fromkeys(("Gemma2ForCausalLM", "Gemma3ForCausalLM", "VaultGemmaForCausalLM"),
                    ("final_logit_softcapping", _softcap)),
    **dict.fromkeys(("CohereForCausalLM", "Cohere2ForCausalLM"), ("logit_scale", _times)),
    **dict.fromkeys(("GraniteForCausalLM", "GraniteMoeForCausalLM", "GraniteMoeSharedForCausalLM",
                     "GraniteMoeHybridForCausalLM"), ("logits_scaling", _divided_by)),
}
# Config attributes that post-process logits in some model, with the value that leaves them unchanged. Set on a class
# not listed above, they are refused: the same name means different things across models (HyperCLOVAX multiplies by
# `logits_scaling`, Granite divides), so applying one model's rule to another would be silently wrong.
_POSTPROCESSING_ATTRIBUTES = {"final_logit_softcapping": None, "logits_soft_cap": None, "output_logit_soft_cap": None,
                              "logit_scale": 1.0, "logits_scaling": 1.0, "lm_head_multiplier": 1.0,
                              "output_multiplier": 1.0, "output_multiplier_scale": 1.0}


def output_head(base) -> Callable[[torch.Tensor], torch.Tensor]:
    """Final hidden states → the logits `base(...)` returns: the output embeddings, then the post-processing of its
    class (soft-capping, scaling), if any. A post-processing of an unlisted class is a one-line `UserError`."""
    head = base.get_output_embeddings()
    config = base.config.get_text_config()
    known = _POSTPROCESSED_CLASSES.get(type(base).__name__)
    if known is not None:
        attr, transform = known
        value = getattr(config, attr, None)
        if value is None:  # e.g. Gemma 3 without soft-capping: its forward skips the step too
            return head
        post = transform(value)
        return lambda hidden: post(head(hidden))
    for attr, unchanged in _POSTPROCESSING_ATTRIBUTES.items():
        value = getattr(config, attr, None)
        if value is not None and value != unchanged:
            raise UserError(f"{type(base).__name__} sets {attr}={value}, a post-processing of its logits that the "
                            "hidden-state loss (SFT and RL) does not know for this model class")
    return head


def decoder_and_head(model) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """(the decoder stack returning final hidden states, the output head) of a causal LM, peft-wrapped or not.

    Calling them separately lets a caller apply the head only where it needs logits (objectives/chunked.py); the
    head includes the model's logit post-processing (`output_head`), so head(decoder(x)) equals model(x).logits.
    Active LoRA adapters and `disable_adapter()` apply inside both, as in a normal forward.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), output_head(base)


def disable_lora_dropout(model: torch.nn.Module) -> int:
    """Replace every LoRA dropout (all adapters) with the identity; returns how many were active.

    PPO needs it: rollout log-probs come from eval mode and the update from train mode, so any dropout makes even the
    first on-policy minibatch off-policy (ratio != 1). The paper code trains PPO with dropout 0; an SFT adapter
    saved with dropout keeps it in its config.
    """
    n = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, layer in list(dropouts.items()):
                if isinstance(layer, torch.nn.Dropout) and layer.p > 0:
                    dropouts[name] = torch.nn.Identity()
                    n += 1
    return n


def compile_decoder_layers(model: torch.nn.Module) -> int:
    """`Module.compile()` on every `*DecoderLayer` (in place, so checkpoints and adapters save as usual)."""
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    for layer in layers:
        layer.compile(dynamic=True)  # sequence lengths vary from batch to batch
    return len(layers)


def load_for_inference(settings: ModelSettings, device: torch.device | str = "cpu") -> Any:
    """Base model (quantized as configured) + the optional adapter, frozen, in eval mode (evaluation)."""
    model = load_base_model(settings, device)
    if settings.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(check_adapter_dir(settings.adapter)), is_trainable=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
