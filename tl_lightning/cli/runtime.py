"""Process-level helpers for the command line: the CPU thread policy, quiet logs, one-line user errors.

Thread policy: a run's top-level `threads` key (`--threads N`) sets torch's intra-op threads; null keeps torch's
default (`OMP_NUM_THREADS` when set, else one thread per core). The shipped CPU configs set `threads: 1`: the tiny
model's matrices are too small to split across cores, and on a machine that other work shares, two threads that
wait for each other ran the quickstart 5-7x slower (README, Performance).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from tl_lightning.core.errors import UserError

# Lightning's INFO lines that say nothing about this run (product tips, hardware that cannot exist here, internals).
_LIGHTNING_NOISE = ("💡 Tip:", "TPU available:", "HPU available:", "Seed set to ",
                    "Loading `train_dataloader` to estimate number of stepping batches")
# Library warnings a user cannot act on (raised inside peft / Lightning / torch for their own calls).
_UNACTIONABLE_WARNINGS = (
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),  # peft reads the old transformers attribute
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),  # Lightning's pytree helper on torch 2.13
    (r"The dirpath has changed from", Warning),  # every resumed run writes to a new version_N: expected
)


def set_threads(threads: int | None) -> None:
    """torch intra-op threads for this process; None leaves torch's default (see the module docstring)."""
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"threads must be a positive number of CPU threads or null, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _drop_lightning_noise(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_LIGHTNING_NOISE)


def quiet_third_party_logs() -> None:
    """One handler per message (Lightning adds its own to the `lightning` loggers, which doubled lines when the
    root logger also had one), no product tips, no progress bars in logs, no warnings a user cannot act on."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # the CPU "kernels-community" notice (env-notes §2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning").handlers.clear()  # added by `import lightning`; its records reach root as well
    for name in ("lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        handler = logging.StreamHandler()  # Lightning's own lines stay plain, as Lightning prints them
        handler.addFilter(_drop_lightning_noise)
        lg.addHandler(handler)
        lg.propagate = False
    for message, category in _UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    import os

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # "Generating train split" in every log
    if not sys.stderr.isatty():  # a log file or CI: tqdm's carriage-return bars become walls of text
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers
        if "transformers" in sys.modules:  # imported already: the variable came too late
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def _user_error_message(e: BaseException) -> str | None:
    if isinstance(e, UserError):
        return str(e)
    text = str(e)
    if "CUDAAccelerator can not run on your system" in text or "No supported gpu backend found" in text or \
            ("accelerator" in text and "not available" in text):
        return ("a GPU accelerator was requested but CUDA is not available on this machine: "
                "set trainer.accelerator: cpu (and model.init_args.policy.quantization: null for speed) "
                "or run on a GPU")
    if isinstance(e, OSError) and ("huggingface.co" in text or "offline" in text.lower()):
        return f"cannot load the model or tokenizer: {text.splitlines()[0]}"
    return None


def run_with_user_errors(fn: Callable[[], None]) -> int:
    """Run `fn`; a user mistake prints `error: <one line>` to stderr and returns 2. Other errors propagate."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - classified below, re-raised when it is not a user mistake
        msg = _user_error_message(e)
        if msg is None:
            raise
        print(f"error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    return 0
