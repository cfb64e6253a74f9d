"""Process-level helpers for the command line: quiet third-party logs, one-line user errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tl_lightning.errors import UserError


def quiet_third_party_logs() -> None:
    """Silence the harmless bitsandbytes "kernels-community" notice (env-notes §2) and hub progress noise."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


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
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0
