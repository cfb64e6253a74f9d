"""Test configuration.

    pytest              # CPU unit + smoke tests (gpu and slow tests are skipped)
    pytest -m gpu       # CUDA tests (skip themselves without CUDA)
    pytest -m slow      # longer CPU runs

`tiny_checkpoint` builds a random Llama + in-process BPE tokenizer once per session and saves it with
`save_pretrained`; tests load it through the production `from_pretrained(..., quantization_config=...)` path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


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
    from tl_lightning.models.loading import load_tokenizer

    return load_tokenizer(tiny_checkpoint)


def shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (the ../shared data folder beside the repo)")
    return p
