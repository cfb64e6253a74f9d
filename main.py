"""tl-lightning command line.

    python main.py fit --config configs/sft.yaml            # MAE + PKT weighted-token SFT (CodeLLaMA-7B, NF4 + LoRA)
    python main.py fit --config configs/quickstart.yaml     # the same job on a tiny local model, CPU, ~1 minute
    python main.py fit --config configs/sft.yaml --print_config

User mistakes end with one `error: ...` line (exit code 2), not a traceback.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import ArgsType


def cli_main(args: ArgsType = None) -> None:
    from tl_lightning.cli.runtime import quiet_third_party_logs

    quiet_third_party_logs()
    from tl_lightning.cli.app import TLCLI

    TLCLI(args=args)


def main() -> None:
    from tl_lightning.cli.runtime import run_with_user_errors

    sys.exit(run_with_user_errors(cli_main))


if __name__ == "__main__":
    main()
