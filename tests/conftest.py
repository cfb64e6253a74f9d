"""Test configuration.

    pytest              # CPU unit + smoke tests (gpu and slow tests are skipped)
    pytest -m gpu       # CUDA tests (skip themselves without CUDA)
    pytest -m slow      # longer CPU runs

`tiny_checkpoint` builds a random Llama + in-process BPE tokenizer once per session and saves it with
`save_pretrained`; tests load it through the production `from_pretrained(..., quantization_config=...)` path.
Tests mirror the package (tests/format, tests/data, tests/objectives, ...); shared helpers are in helpers.py.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run with -m gpu)")
    config.addinivalue_line("markers", "slow: longer CPU runs (run with -m slow)")


def pytest_collection_modifyitems(config, items):
    markexpr = config.option.markexpr or ""
    for item in items:
        if "gpu" in item.keywords and ("gpu" not in markexpr or not torch.cuda.is_available()):
            item.add_marker(pytest.mark.skip(reason="needs CUDA (pytest -m gpu on a GPU machine)"))
        if "slow" in item.keywords and "slow" not in markexpr:
            item.add_marker(pytest.mark.skip(reason="slow (pytest -m slow)"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    from tl_lightning.models.tiny import build_tiny_checkpoint

    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", hidden=64, layers=2, vocab_size=1024))


@pytest.fixture(scope="session")
def tokenizer(tiny_checkpoint):
    from tl_lightning.checkpoints import load_tokenizer

    return load_tokenizer(tiny_checkpoint)
