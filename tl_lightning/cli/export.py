"""Merge a trained LoRA adapter into its base and write a plain transformers checkpoint (+ tokenizer).

    python -m tl_lightning.cli.export ADAPTER_DIR OUT_DIR [--base CHECKPOINT] [--dtype bfloat16]

The base is loaded *unquantized* (merging into 4-bit weights would round the update away); `--base` defaults to
the adapter's recorded `base_model_name_or_path`. The result loads with `AutoModelForCausalLM.from_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tl_lightning.core.errors import UserError
from tl_lightning.data.tokenization import save_tokenizer
from tl_lightning.systems.model_card import prompt_format_of, write_model_card


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None,
                  dtype: str = "bfloat16") -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tl_lightning.core.checkpoints import load_tokenizer, resolve_checkpoint
    from tl_lightning.models.loading import DTYPES

    adapter_dir = Path(adapter_dir)
    cfg_file = adapter_dir / "adapter_config.json"
    if not cfg_file.is_file():
        raise UserError(f"{adapter_dir} has no adapter_config.json (expected an hf/<step> export directory)")
    base = base or json.loads(cfg_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError("the adapter does not record its base model: pass --base")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {sorted(DTYPES)}")
    model = AutoModelForCausalLM.from_pretrained(resolve_checkpoint(base), dtype=DTYPES[dtype])
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    for name in ("config.yaml", "data_stats.json"):  # the run's record travels with the model (card, server)
        if (adapter_dir / name).is_file():
            shutil.copy(adapter_dir / name, out / name)
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base
    save_tokenizer(load_tokenizer(str(tok_src)), out, prompt_format_of(out))
    write_model_card(out, "transformers")
    return out


def main(argv: list[str] | None = None) -> None:
    from tl_lightning.cli.runtime import quiet_third_party_logs, run_with_user_errors

    quiet_third_party_logs()  # before bitsandbytes loads (its CPU kernel notice) and transformers' progress bars

    ap = argparse.ArgumentParser(description="Merge a LoRA adapter into its base model.")
    ap.add_argument("adapter_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--base", default=None, help="base checkpoint (default: the one recorded in the adapter)")
    ap.add_argument("--dtype", default="bfloat16")
    a = ap.parse_args(argv)

    def run() -> None:
        print(f"merged model written to {merge_adapter(a.adapter_dir, a.out_dir, a.base, a.dtype)}")

    raise SystemExit(run_with_user_errors(run))


if __name__ == "__main__":
    main()
