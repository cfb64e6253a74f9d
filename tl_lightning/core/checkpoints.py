"""Checkpoints and tokenizers by path or hub id: one-line errors, and checkpoints built on first use.

`resolve_checkpoint` fails early, in one line, on a missing local path or on an uncached hub id that cannot be
fetched (offline, no network, no such model).
`load_tokenizer` is the one place a tokenizer is loaded (datamodules and systems both call it).
`CheckpointBuilder` is the interface of a checkpoint that a command can build itself when it is missing (the tiny
random Llama of the quickstart, a converted GGUF model); `ensure_checkpoint` builds it once, under a file lock, so
several processes (DDP ranks, parallel runs) never build the same directory twice.
"""

from __future__ import annotations

import logging
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

from tl_lightning.core.errors import UserError

log = logging.getLogger(__name__)
MODEL_MARKER = "config.json"
TOKENIZER_MARKER = "tokenizer_config.json"


class CheckpointBuilder(ABC):
    """Builds a `save_pretrained` directory (model + tokenizer) at a given path."""

    @abstractmethod
    def build(self, path: Path) -> None:
        """Write the checkpoint into `path` (an empty or missing directory)."""

    def describe(self) -> str:
        """What `build` makes, for the line a run prints when it builds (e.g. "a new random TinyLlama (...)")."""
        return f"a new {type(self).__name__} checkpoint"


def ensure_checkpoint(checkpoint: str, builder: CheckpointBuilder | None) -> str:
    """Build `checkpoint` with `builder` if it is a missing local directory; a no-op when it exists or when
    there is no builder. Returns the checkpoint unchanged."""
    path = Path(checkpoint).expanduser()
    if builder is None or (path / MODEL_MARKER).is_file():
        return checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    lock_path = path.parent / f".{path.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same directory
        if not (path / MODEL_MARKER).is_file():
            # A warning, not an info line: when the path is a typo for an existing checkpoint, this is the only sign
            # that the run trains something else than the user meant.
            log.warning("building %s at %s: no checkpoint there (policy.build). If you meant an existing checkpoint, "
                        "fix policy.checkpoint", builder.describe(), path)
            tmp = path.with_name(path.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted build
            builder.build(tmp)
            tmp.rename(path)  # all or nothing: an interrupted build leaves no half directory behind
        lock_path.unlink(missing_ok=True)  # waiters re-check the marker, so the file is not needed after
    return checkpoint


def resolve_checkpoint(checkpoint: str, marker: str = MODEL_MARKER) -> str:
    """Fail early, in one line, on a missing local path, and on a hub id that is not cached and cannot be fetched.

    `marker` is the file a local directory must hold (tokenizers: "tokenizer_config.json").
    """
    p = Path(checkpoint).expanduser()
    if p.exists():
        if not (p / marker).is_file():
            raise UserError(f"checkpoint {p} has no {marker} (expected a save_pretrained directory)")
        return str(p)
    if looks_like_local_path(checkpoint):  # a typo in a local path: reported at once, not as a hub lookup
        raise UserError(f"model checkpoint not found: {checkpoint} (fix the path, or build it: "
                        f"`python -m tl_lightning.models.tiny {checkpoint}` writes a tiny random Llama there)")
    if not in_hf_cache(checkpoint, marker):
        if hub_offline():
            raise UserError(f"model checkpoint not found: {checkpoint!r} is no local directory, and as a hub id it "
                            "is not in the local HF cache (HF_HUB_OFFLINE=1 forbids downloading it): fix the path, "
                            "or download the model once online")
        check_on_hub(checkpoint, marker)
    return checkpoint


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or transformers' older TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(name, "0") not in ("0", "", "false", "False")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def in_hf_cache(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - any cache lookup problem (e.g. a name that is no valid id) means "not cached"
        return False


HUB_TIMEOUT_S = 5.0


def check_on_hub(repo_id: str, filename: str) -> None:
    """One HEAD request for `filename` of the hub model `repo_id`, without retries, before transformers downloads it.

    For an id that is not cached, the hub client retries a failed request for about a minute (46 log lines with no
    network) and its final error does not name the id; this fails in seconds, naming it. A server error (5xx) is
    left to the download, which retries it.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    not_here = f"model checkpoint not found: {repo_id!r} is no local directory and not in the local HF cache"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise UserError(f"{not_here}, and it is a gated model on the Hugging Face hub: accept its terms there and log "
                        "in (`hf auth login`), or use a local directory") from None
    except RepositoryNotFoundError:
        raise UserError(f"{not_here}, and the Hugging Face hub has no such model (or it is private and you are not "
                        "logged in): fix the path or the id") from None
    except RemoteEntryNotFoundError:
        raise UserError(f"hub model {repo_id!r} has no {filename}: it is not a transformers checkpoint") from None
    except HfHubHTTPError:
        return
    except Exception as e:  # noqa: BLE001 - DNS failure, refused connection, timeout, proxy: there is no hub to ask
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{not_here}, and the Hugging Face hub cannot be reached ({reason}): fix the path or the "
                        "id, or download the model once online") from None


LOCAL_PREFIXES = (".", "/", "~", "runs/", "data/")


def looks_like_local_path(name: str) -> bool:
    """A hub id is "name" or "org/name". A name with a local prefix (./, ../, /, ~, runs/, data/), a backslash,
    more than one slash or a trailing one, or whose first part is a directory here, is a local path."""
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(LOCAL_PREFIXES) or "\\" in name or len(parts) > 2 or name.endswith("/")
            or (len(parts) == 2 and Path(parts[0]).is_dir()))


def load_tokenizer(checkpoint: str, trust_remote_code: bool = False):
    """The tokenizer of a checkpoint, with a pad token (LLaMA tokenizers ship without one)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_checkpoint(checkpoint, TOKENIZER_MARKER),
                                        trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # the paper code pads with unk
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok
