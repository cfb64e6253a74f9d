"""`TLCLI`: LightningCLI in subclass mode (`class_path` / `init_args` YAML) with the project's argument links.

Systems and datamodules are imported here so that their short names work on the command line
(`--model SFTSystem`, `--model.help SFTSystem`), and attribute docstrings of the settings dataclasses are turned
on so that `--help` shows what every field means.
"""

from __future__ import annotations

from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

import tl_lightning.data.benchmark_datamodule  # noqa: F401  (registers the short class names)
import tl_lightning.data.prompt_datamodule  # noqa: F401
import tl_lightning.data.sft_datamodule  # noqa: F401
import tl_lightning.systems.evaluation  # noqa: F401
import tl_lightning.systems.ppo  # noqa: F401
import tl_lightning.systems.sft  # noqa: F401


class TLCLI(LightningCLI):
    """fit / validate / test / predict with `--config configs/<stage>.yaml` (composable: later files override)."""

    def __init__(self, *args, **kwargs) -> None:
        set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docs in --help
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(LightningModule, LightningDataModule, *args, subclass_mode_model=True,
                         subclass_mode_data=True, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # The tokenizer always comes from the policy's checkpoint: one value, written once in the YAML.
        parser.link_arguments("model.init_args.policy.checkpoint", "data.init_args.tokenizer")
        # (every system names its model settings `policy`; every datamodule takes `tokenizer`)
