"""`TLCLI`: LightningCLI in subclass mode (`class_path` / `init_args` YAML) with the project's argument links."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI


class TLCLI(LightningCLI):
    """fit / validate / test / predict with `--config configs/<stage>.yaml` (composable: later files override)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(LightningModule, LightningDataModule, *args, subclass_mode_model=True,
                         subclass_mode_data=True, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # The tokenizer always comes from the policy's checkpoint: one value, written once in the YAML.
        parser.link_arguments("model.init_args.policy.checkpoint", "data.init_args.tokenizer")
        # (every system names its model settings `policy`; every datamodule takes `tokenizer`)
