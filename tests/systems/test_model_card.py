"""The model card: Hub metadata, the method and data read from the run's record, evaluation when given, usage."""

import json
import shutil
from pathlib import Path

import yaml

from tl_lightning.systems.model_card import write_model_card

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _export(tmp_path, config: str) -> Path:
    out = tmp_path / "final"
    out.mkdir()
    shutil.copy(CONFIGS / config, out / "config.yaml")
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "runs/tiny-llama"}))
    (out / "data_stats.json").write_text(json.dumps({"train_conversations": 400, "mae_blocked_turns": 61}))
    return out


def test_an_sft_card_states_base_method_data_and_use(tmp_path):
    out = _export(tmp_path, "quickstart.yaml")
    card = write_model_card(out, "peft", {"val/cf": 0.5}).read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "runs/tiny-llama" and meta["library_name"] == "peft"
    assert {"tl-lightning", "tool-calling", "lora", "sft"} <= set(meta["tags"])
    assert "SFT (TL-Training: MAE + PKT)" in card and "PKTWeighting" in card and "MAE:" in card
    assert "train_conversations 400" in card and "| val/cf | 0.5 |" in card
    assert "python -m tl_lightning.cli.serve final" in card and "AutoPeftModelForCausalLM" in card


def test_a_merged_online_rl_card(tmp_path):
    out = _export(tmp_path, "online_grpo_quickstart.yaml")
    (out / "adapter_config.json").unlink()
    card = write_model_card(out, "transformers").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers" and "online-rl" in meta["tags"]
    assert meta["base_model"] == "runs/tiny-llama"  # from the run's policy checkpoint
    assert "ToolWorldEnv" in card and "Episode reward" in card and "No evaluation was logged" in card
