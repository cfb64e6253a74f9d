"""`TLCLI`: LightningCLI in subclass mode (`class_path` / `init_args` YAML) with the project's argument links.

Systems and datamodules are imported here so that their short names work on the command line
(`--model SFTSystem`, `--model.help SFTSystem`), and attribute docstrings of the settings dataclasses are turned
on so that `--help` shows what every field means. Config mistakes end in one line (`config_errors`), and paths are
checked before the trainer starts, so a typo costs seconds, not a model load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI

import tl_lightning.data.benchmark_datamodule  # noqa: F401  (registers the short class names)
import tl_lightning.data.prompt_datamodule  # noqa: F401
import tl_lightning.data.sft_datamodule  # noqa: F401
import tl_lightning.systems.evaluation  # noqa: F401
import tl_lightning.systems.ppo  # noqa: F401
import tl_lightning.systems.sft  # noqa: F401
from tl_lightning.cli.config_errors import OneLineErrorParser
from tl_lightning.cli.runtime import set_threads
from tl_lightning.core.errors import UserError
from tl_lightning.models.loading import ModelSettings, check_model_paths
from tl_lightning.systems.callbacks import PlainProgressBar

SUBCOMMANDS = ("fit", "validate", "test", "predict")
PROJECT_HELP = (
    "The project's options are those of the model and data classes a config names: `--model.help SFTSystem` (or "
    "PPOSystem, EvalSystem) and `--data.help ToolSFTDataModule` (or ToolPromptDataModule, BenchmarkDataModule) list "
    "them with their meaning; `--config configs/quickstart.yaml --print_config` prints a whole resolved config. "
    "README.md, Config reference, describes the main keys.")
THREADS_HELP = ("torch intra-op CPU threads for this run (null: torch's default, OMP_NUM_THREADS or one per core). "
                "The CPU configs set 1: the tiny model gains nothing from a second thread, and on a shared machine "
                "threads that wait for each other cost several times the run time.")


class TLCLI(LightningCLI):
    """fit / validate / test / predict with `--config configs/<stage>.yaml` (composable: later files override)."""

    def __init__(self, *args, **kwargs) -> None:
        set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docs in --help
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_class", OneLineErrorParser)
        kwargs.setdefault("seed_everything_default", 0)  # a config without a seed is still reproducible
        kwargs.setdefault("parser_kwargs", {name: {"description": PROJECT_HELP, "epilog": PROJECT_HELP}
                                            for name in SUBCOMMANDS})  # at the top and after the long key list
        super().__init__(LightningModule, LightningDataModule, *args, subclass_mode_model=True,
                         subclass_mode_data=True, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # The tokenizer always comes from the policy's checkpoint: one value, written once in the YAML.
        parser.link_arguments("model.init_args.policy.checkpoint", "data.init_args.tokenizer")
        # (every system names its model settings `policy`; every datamodule takes `tokenizer`)
        parser.add_argument("--threads", type=Optional[int], default=None, help=THREADS_HELP)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        set_threads(config.get("threads"))

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """LightningCLI's, after a check of every configured path, and with plain-line progress when stdout is
        not a terminal (a log file, CI, a notebook), where the live progress bar draws nothing."""
        self._check_paths()
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        if not sys.stdout.isatty() and config.get("enable_progress_bar") is not False and \
                not any(isinstance(c, ProgressBar) for c in configured + callbacks):
            callbacks.append(PlainProgressBar())
        return self._instantiate_trainer(config, callbacks)

    def _check_paths(self) -> None:
        """One-line `UserError`s for a missing model, adapter, data file or checkpoint, before Lightning prints
        anything or a model loads."""
        settings = getattr(self.model, "policy_settings", None)  # every system names its model settings `policy`
        if isinstance(settings, ModelSettings):
            check_model_paths(settings)
        check_data_paths = getattr(self.datamodule, "check_paths", None)
        if check_data_paths is not None:
            check_data_paths()
        ckpt = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and not Path(ckpt).is_file():
            raise UserError(f"checkpoint not found: {ckpt} (a run keeps them in <run>/version_N/checkpoints)")
