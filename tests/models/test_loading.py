"""The production loading path on the tiny checkpoint: NF4 on CPU, the AVX512-BF16 gradient fix, user errors."""

import time

import pytest
import torch

from tl_lightning.core.checkpoints import resolve_checkpoint
from tl_lightning.core.errors import UserError
from tl_lightning.models.loading import (
    LoraSettings,
    ModelSettings,
    disable_cpu_bf16_repack,
    load_base_model,
    load_policy,
)


def _lora_grads(model, ids):
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _policy(ckpt, fix: bool):
    torch.manual_seed(0)
    settings = ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32", lora=LoraSettings(r=4,
                                                                                                             dropout=0.0))
    model = load_policy(settings)
    if not fix:  # undo the fix to show what it prevents
        import bitsandbytes as bnb

        for m in model.modules():
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = True
    for n, p in model.named_parameters():  # non-zero lora_B so lora_A gets gradients
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(hash(n) % 1000))
    return model


def test_nf4_loads_through_from_pretrained(tiny_checkpoint):
    import bitsandbytes as bnb

    model = load_base_model(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32"))
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert n4 == 2 * 7 and disable_cpu_bf16_repack(model) == n4
    assert all(not m.support_avx512bf16_for_cpu for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))


def test_lora_grads_after_eval_forward_equal_fresh(tiny_checkpoint):
    ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(1))
    fresh = _lora_grads(_policy(tiny_checkpoint, fix=True), ids)
    model = _policy(tiny_checkpoint, fix=True)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # what a validation step or a PPO rollout does
    model.train()
    after = _lora_grads(model, ids)
    assert fresh.keys() == after.keys()
    for n in fresh:
        torch.testing.assert_close(after[n], fresh[n], rtol=1e-5, atol=1e-7)


def test_without_fix_the_warning_is_an_error_on_avx512bf16(tiny_checkpoint):
    """Where the CPU has AVX512-BF16, the unpatched path must fail loudly under our pytest filter."""
    ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(1))
    model = _policy(tiny_checkpoint, fix=False)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        pytest.skip("CPU without AVX512: bitsandbytes never repacks here")
    try:
        _lora_grads(model, ids)
    except UserWarning as e:
        assert "autograd kernel was not registered" in str(e)


@pytest.mark.parametrize("checkpoint, message", [
    ("./no/such/dir", "model checkpoint not found"),
    ("codellama/CodeLlama-7b-hf", "not in the local HF cache"),
])
def test_checkpoint_errors(checkpoint, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=message):
        resolve_checkpoint(checkpoint)


LOOPBACK_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def test_uncached_hub_id_while_online_fails_fast_naming_the_id(monkeypatch):
    """Without offline mode, the hub client retried an uncached id for about a minute (46 log lines) before its own
    error, which did not name the id. One request without retries decides now: the hub has no such model, or there
    is no hub to ask (this machine), either way one `UserError` naming the id, in seconds."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as when the variable is unset at import
    # the hub is a closed loopback port: tests send no traffic off this machine (same failure as no network)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", LOOPBACK_HUB)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        LOOPBACK_HUB + "/{repo_id}/resolve/{revision}/{filename}")
    t0 = time.monotonic()
    with pytest.raises(UserError, match="'tl-lightning-tests/no-such-model'"):
        resolve_checkpoint("tl-lightning-tests/no-such-model")
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("status, error_code, message", [
    (404, "RepoNotFound", "the Hugging Face hub has no such model"),
    (401, "GatedRepo", "it is a gated model"),
    (404, "EntryNotFound", "hub model 'org/name' has no config.json"),
    (503, None, None),  # a server error is left to the download, which retries it
])
def test_each_hub_answer_to_an_uncached_id(status, error_code, message, monkeypatch):
    """The hub's answers, classified by huggingface_hub's own `hf_raise_for_status` as on a real response."""
    import httpx2
    import huggingface_hub
    from huggingface_hub.utils import hf_raise_for_status

    def head(url, timeout):
        headers = {"X-Error-Code": error_code} if error_code else {}
        hf_raise_for_status(httpx2.Response(status, headers=headers, request=httpx2.Request("HEAD", url)))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", head)
    if message is None:
        assert resolve_checkpoint("org/name") == "org/name"
        return
    with pytest.raises(UserError, match=message) as e:
        resolve_checkpoint("org/name")
    assert "'org/name'" in str(e.value) and "\n" not in str(e.value)


def test_settings_validation(tiny_checkpoint):
    from tl_lightning.models.loading import prepare_for_training

    settings = ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", lora=None)  # fine for inference
    with pytest.raises(UserError, match="cannot be fully fine-tuned"):
        prepare_for_training(None, settings)
    with pytest.raises(UserError, match="lora.r"):
        LoraSettings(r=0)


def test_missing_bitsandbytes_is_one_line(monkeypatch):
    import importlib.util

    from tl_lightning.models import loading

    real = importlib.util.find_spec
    monkeypatch.setattr(loading.importlib.util, "find_spec",
                        lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(UserError, match="needs bitsandbytes"):
        loading.quantization_config("nf4", torch.float32)


def test_compile_option_compiles_each_decoder_layer_in_place(tiny_checkpoint):
    """`policy.compile` wraps every block with torch.compile without changing the module tree or state-dict keys
    (compiling itself is slow on CPU; benchmarks/compile.py measures it)."""
    from tl_lightning.models.loading import load_policy

    settings = ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                             lora=LoraSettings(r=4, dropout=0.0))
    plain = load_policy(settings)
    compiled = load_policy(ModelSettings(**{**settings.__dict__, "compile": True}))
    layers = [m for m in compiled.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert len(layers) == 2 and all(m._compiled_call_impl is not None for m in layers)
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_quantization_none_alias_from_the_command_line():
    assert ModelSettings(quantization="none").quantization is None


_TINY = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, head_dim=8)


def _tiny_lm(family: str, **post):
    """A random one-layer causal LM of a family whose forward post-processes the head's logits (or not)."""
    import transformers

    name = {"llama": "Llama", "gemma2": "Gemma2", "gemma3": "Gemma3", "cohere": "Cohere", "granite": "Granite",
            "hyperclovax": "HyperCLOVAX"}[family]
    config = getattr(transformers, "Gemma3TextConfig" if name == "Gemma3" else f"{name}Config")(**_TINY, **post)
    torch.manual_seed(0)
    return getattr(transformers, f"{name}ForCausalLM")(config).eval()


@pytest.mark.parametrize("family, post", [
    ("gemma2", {"final_logit_softcapping": 0.05}),  # cap · tanh(logits / cap), the cap well inside the logits' range
    ("gemma3", {"final_logit_softcapping": 0.05}),
    ("cohere", {"logit_scale": 0.25}),  # logits · scale
    ("granite", {"logits_scaling": 4.0}),  # logits / scaling
])
def test_the_head_applies_the_models_logit_postprocessing(family, post):
    """head(decoder(x)) is exactly model(x).logits, also for models that post-process the head's output (the bare
    output embeddings would differ), with or without a peft wrapper."""
    from peft import LoraConfig, get_peft_model

    from tl_lightning.models.loading import decoder_and_head

    model = _tiny_lm(family, **post)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        for wrapped in (model, get_peft_model(model, LoraConfig(r=2, target_modules="all-linear"))):
            decoder, head = decoder_and_head(wrapped)
            hidden = decoder(input_ids=ids).last_hidden_state
            assert torch.equal(head(hidden), logits)
        assert not torch.allclose(model.get_output_embeddings()(hidden), logits)


def test_a_model_without_postprocessing_gets_its_output_embeddings():
    from tl_lightning.models.loading import decoder_and_head

    for model in (_tiny_lm("llama"), _tiny_lm("gemma2", final_logit_softcapping=None)):
        assert decoder_and_head(model)[1] is model.get_output_embeddings()


def test_an_unknown_postprocessing_is_refused_in_one_line():
    """HyperCLOVAX multiplies by `logits_scaling` where Granite divides: a class outside the known ones is refused."""
    from tl_lightning.models.loading import decoder_and_head

    with pytest.raises(UserError, match=r"HyperCLOVAXForCausalLM sets logits_scaling=4.0") as e:
        decoder_and_head(_tiny_lm("hyperclovax", logits_scaling=4.0))
    assert "\n" not in str(e.value)
    decoder_and_head(_tiny_lm("hyperclovax", logits_scaling=1.0))  # unchanged logits: nothing to refuse
