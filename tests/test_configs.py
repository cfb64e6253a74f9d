"""Every shipped config parses against the real classes, alone (validated by --print_config, which builds
nothing, so GPU configs pass on CPU) and composed with its stage's tiny overlay (fully instantiated, no training)."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from main import cli_main
from tl_lightning.cli.app import TLCLI

ROOT = Path(__file__).resolve().parents[1] / "configs"
STRATEGIES = sorted((ROOT / "strategies").glob("*.yaml"))
PROMPT_OVERLAYS = [ROOT / "smollm2" / "chat_template.yaml"]
OVERLAYS = {ROOT / "tiny.yaml", ROOT / "tiny_ppo.yaml", ROOT / "tiny_online.yaml", ROOT / "eval" / "tiny.yaml",
            *STRATEGIES, *PROMPT_OVERLAYS}
# stage configs: configs/ and the ablation benchmark's (ids relative to configs/)
CONFIGS = sorted([p for p in ROOT.rglob("*.yaml") if p not in OVERLAYS] +
                 list((ROOT.parent / "benchmarks" / "ablation").glob("*.yaml")))


def overlay_for(config: Path) -> Path:
    system = yaml.safe_load(config.read_text())["model"]["class_path"]
    return {"tl_lightning.systems.sft.SFTSystem": ROOT / "tiny.yaml",
            "tl_lightning.systems.ppo.PPOSystem": ROOT / "tiny_ppo.yaml",
            "tl_lightning.systems.online.OnlineRLSystem": ROOT / "tiny_online.yaml",
            "tl_lightning.systems.evaluation.EvalSystem": ROOT / "eval" / "tiny.yaml"}[system]


def _subcommand(config: Path) -> str:
    return "test" if "evaluation" in yaml.safe_load(config.read_text())["model"]["class_path"] else "fit"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_config_validates_alone(config):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        cli_main([_subcommand(config), "--config", str(config), "--print_config"])
    assert e.value.code in (0, None)
    resolved = yaml.safe_load(out.getvalue())
    assert resolved["model"]["class_path"].startswith("tl_lightning.")
    assert "tokenizer" not in resolved["data"]["init_args"]  # linked from the policy checkpoint, never written twice


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_config_with_tiny_overlay_instantiates(config):
    cli = TLCLI(args=["--config", str(config), "--config", str(overlay_for(config))], run=False)
    assert cli.model.policy_settings.checkpoint == "runs/tiny-llama"
    assert cli.trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    assert cli.datamodule.hparams.tokenizer == cli.model.policy_settings.checkpoint  # linked, written once


@pytest.mark.parametrize("overlay", STRATEGIES, ids=lambda p: p.name)
@pytest.mark.parametrize("stage", ["sft.yaml", "ppo.yaml"])
def test_strategy_overlays_compose_with_each_stage(overlay, stage):
    tiny = ROOT / ("tiny.yaml" if stage == "sft.yaml" else "tiny_ppo.yaml")
    cli = TLCLI(args=["--config", str(ROOT / stage), "--config", str(overlay), "--config", str(tiny)], run=False)
    assert cli.trainer.num_devices == 2
    expected = "BlockFSDPStrategy" if "fsdp" in overlay.name else "DDPStrategy"
    assert type(cli.trainer.strategy).__name__ == expected
    if "fsdp" in overlay.name:
        assert cli.model.policy_settings.quant_storage == "bfloat16"


@pytest.mark.parametrize("config", [p for p in CONFIGS if p.parent.name == "smollm2"], ids=lambda p: p.name)
def test_chat_template_overlay_composes_with_each_smollm2_config(config):
    cli = TLCLI(args=["--config", str(config), "--config", str(PROMPT_OVERLAYS[0]), "--config",
                      str(overlay_for(config))], run=False)
    assert cli.datamodule.hparams.prompt_format == "chat_template"


@pytest.mark.parametrize("args,expected", [
    ([], "RewardTable"),
    (["--model.init_args.reward.correct=2"], "RewardTable"),  # a table value, as before rewards were components
    (["--model.init_args.reward=ExactMatchReward"], "ExactMatchReward"),
    (["--model.init_args.reward=tl_lightning.rewards.reward.PartialCreditReward",
      "--model.init_args.reward.init_args.unparsed=-2"], "PartialCreditReward")])
def test_the_rl_reward_is_chosen_from_the_command_line(args, expected):
    cli = TLCLI(args=["--config", str(ROOT / "grpo.yaml"), "--config", str(ROOT / "tiny_ppo.yaml"), *args], run=False)
    reward = cli.model.call_reward
    assert type(reward).__name__ == expected
    assert reward.correct == 2 if args[:1] == ["--model.init_args.reward.correct=2"] else True
    assert getattr(reward, "unparsed", -2) == -2
