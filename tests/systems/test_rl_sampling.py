"""RL learns from the distribution it sampled and for as long as it is told: the schedule is sized in optimizer
steps (also after an extension), the learner's log-probs use the sampling temperature (`rollout/logprob_gap` ~ 0),
truncating samplers are refused, long prompts are counted or skipped, and generation stops at the chat template's
end of turn."""

import copy
import csv
import dataclasses
import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from tl_lightning.core.errors import DataError, UserError
from tl_lightning.data.prompt_datamodule import ToolPromptDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.format.render import ChatTemplateFormat, stop_token_ids
from tl_lightning.models.generation import GenerationSettings, generate_responses
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.objectives.estimators import GRPO
from tl_lightning.objectives.kl import FixedKLController
from tl_lightning.systems.ppo import KLSettings, PPOSystem, optimizer_steps
from tl_lightning.systems.ppo_rollout import build_rollout
from tl_lightning.systems.schedules import WarmupConstant, WarmupCosine, cosine_with_warmup

LR, MIN_RATIO = 1e-3, 0.1


def _grpo(ckpt, generation=None, schedule=WarmupConstant) -> PPOSystem:
    return PPOSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                   lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                     advantage=GRPO(group_size=2), critic=None,
                     kl=KLSettings(FixedKLController(0.1), placement="loss"),
                     generation=generation or {"max_new_tokens": 6, "do_sample": True, "temperature": 0.7},
                     ppo={"ppo_epochs": 1, "minibatch_size": 2},  # 2 prompts x 2 samples: 2 minibatches
                     actor_lr=LR, lr_scheduler=schedule, rollout_seed=3)


def _dm(ckpt, **kw):
    return ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=30), batch_size=2, shuffle_seed=1, **kw)


def _trainer(root, iterations, epochs=1, **kw):
    return L.Trainer(accelerator="cpu", max_epochs=epochs, limit_train_batches=iterations, default_root_dir=root,
                     logger=L.pytorch.loggers.CSVLogger(root, name="", version=""), enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1, **kw)


def _logged(root: Path, key: str) -> list[float]:
    return [float(r[key]) for r in csv.DictReader(open(root / "metrics.csv")) if r.get(key)]


COSINE = functools.partial(WarmupCosine, warmup=0.0, min_ratio=MIN_RATIO)


def _expected_lr(steps: range, total: int) -> float:
    return LR * sum(cosine_with_warmup(s, 0, total, MIN_RATIO) for s in steps) / len(steps)


def test_optimizer_steps_counts_minibatches_and_caps_at_max_steps():
    assert optimizer_steps(3, 1, -1, ppo_epochs=2, minibatches=4) == 24
    assert optimizer_steps(3, 2, 10, ppo_epochs=2, minibatches=4) == 10  # max_steps counts optimizer steps
    assert optimizer_steps(3, -1, -1, 1, 1) == float("inf")


def test_cosine_schedule_runs_to_its_end_and_is_resized_on_extension(tiny_checkpoint, tmp_path):
    """2 minibatches an iteration: the schedule spans iterations × 2 optimizer steps (it was sized to iterations × 1
    and sat at its floor from the middle of the run on), and an extended run is sized to its new length."""
    L.seed_everything(0)
    system = _grpo(tiny_checkpoint, schedule=COSINE)
    ck = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    trainer = _trainer(tmp_path / "a", 3, callbacks=[ck])
    trainer.fit(system, _dm(tiny_checkpoint))
    sched = system.lr_schedulers()
    assert trainer.global_step == sched.last_epoch == sched.lr_lambdas[0].total == 6
    # each iteration logs the mean LR of its two steps: the cosine over 6 steps, down to the floor only at the end
    assert _logged(tmp_path / "a", "ppo/lr") == pytest.approx([_expected_lr(range(k, k + 2), 6) for k in (0, 2, 4)])
    assert system.optimizers().param_groups[0]["lr"] == pytest.approx(LR * MIN_RATIO)  # after the last step
    # extend the finished run by a second epoch of 3 iterations: the schedule now spans 12 steps
    L.seed_everything(0)
    resumed = _grpo(tiny_checkpoint, schedule=COSINE)
    trainer = _trainer(tmp_path / "b", 3, epochs=2)
    trainer.fit(resumed, _dm(tiny_checkpoint), ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    sched = resumed.lr_schedulers()
    assert trainer.global_step == sched.last_epoch == sched.lr_lambdas[0].total == 12
    assert _logged(tmp_path / "b", "ppo/lr") == pytest.approx([_expected_lr(range(k, k + 2), 12) for k in (6, 8, 10)])


def test_learner_uses_the_sampling_distribution(tiny_checkpoint, tmp_path):
    """Sampled at temperature 0.7: the sampler's recorded log q and the learner's log π agree to float rounding
    (`rollout/logprob_gap`), and a learner at temperature 1 (the old code) would be far off."""
    L.seed_everything(0)
    system = _grpo(tiny_checkpoint)
    trainer = _trainer(tmp_path, 2, enable_checkpointing=False)
    trainer.fit(system, _dm(tiny_checkpoint))
    gaps = _logged(tmp_path, "rollout/logprob_gap")
    assert len(gaps) == 2 and max(gaps) < 1e-4, gaps
    dm = _dm(tiny_checkpoint)
    dm.setup("fit")
    rollout = system._sample(next(iter(dm.train_dataloader())).repeat_each(2))
    mask = rollout.response_mask.float()
    learner = system.runner.forward(rollout, "default", head=True).logp
    assert system._logprob_gap(rollout, learner) < 1e-4
    system.runner.generation = dataclasses.replace(system.generation, temperature=1.0)
    at_one = system.runner.forward(rollout, "default", head=True).logp
    # the random tiny model's logits are nearly flat, so temperature moves them little: still 0.04 nats a token
    assert ((rollout.sample_logp - at_one).abs() * mask).sum() / mask.sum() > 0.01


class _RecordingModel(torch.nn.Module):
    """Stands in for a HF model: records the generate() options and returns two new tokens per prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.kwargs: dict = {}

    def generate(self, input_ids, attention_mask, **kwargs):
        self.kwargs = kwargs
        return torch.cat([input_ids, torch.full((input_ids.size(0), 2), 7)], 1)


def test_sampling_is_not_truncated_unless_asked():
    model = _RecordingModel()
    generate_responses(model, [[5, 6]], 0, 2, GenerationSettings(do_sample=True, temperature=0.8))
    # transformers' own default is top-k 50; its temperature warper is replaced by ours (applied to the learner too)
    assert model.kwargs["top_k"] == 0 and model.kwargs["top_p"] == 1.0 and model.kwargs["temperature"] == 1.0
    assert model.kwargs["logits_processor"][0].temperature == 0.8


def test_rl_refuses_a_truncating_sampler(tiny_checkpoint):
    policy = ModelSettings(checkpoint=tiny_checkpoint, lora=LoraSettings())
    for truncation in ({"top_k": 50}, {"top_p": 0.9}):
        with pytest.raises(UserError, match="top_k / top_p"):
            PPOSystem(policy, advantage=GRPO(), critic=None, generation={"do_sample": True, **truncation})


def test_truncated_prompts_are_counted_and_long_prompts_can_be_skipped(tiny_checkpoint, tmp_path, caplog):
    L.seed_everything(0)
    system = _grpo(tiny_checkpoint, generation={"max_new_tokens": 4, "do_sample": True, "max_prompt_length": 64})
    trainer = _trainer(tmp_path, 2, enable_checkpointing=False)
    with caplog.at_level("WARNING"):
        trainer.fit(system, _dm(tiny_checkpoint))
    assert _logged(tmp_path, "rollout/truncated_prompts") == [2, 4]  # every ToolWorld prompt is longer than 64
    assert "exceed generation.max_prompt_length=64" in caplog.text
    dm = _dm(tiny_checkpoint)
    dm.setup("fit")
    lengths = sorted(len(i["input_ids"]) for i in dm.items)
    limit = lengths[len(lengths) // 2]
    skipping = _dm(tiny_checkpoint, max_prompt_length=limit)
    skipping.setup("fit")
    assert skipping.skipped_long == sum(n > limit for n in lengths) > 0
    assert len(skipping.items) + skipping.skipped_long == len(lengths)
    assert max(len(i["input_ids"]) for i in skipping.items) <= limit
    with pytest.raises(DataError, match="every step prompt is longer than max_prompt_length=8"):
        _dm(tiny_checkpoint, max_prompt_length=8).setup("fit")


def _with_template(tokenizer, template: str, special: str | None = None):
    tok = copy.deepcopy(tokenizer)
    if special:
        tok.add_special_tokens({"additional_special_tokens": [special]})
    tok.chat_template = template
    return tok


TURNS = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
GEN = "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def test_generation_stops_at_the_templates_end_of_turn(tokenizer):
    eot = _with_template(tokenizer, TURNS + "<|eot|>\n" + GEN, special="<|eot|>")  # Llama-3 style: not EOS
    eot_id = eot.convert_tokens_to_ids("<|eot|>")
    assert stop_token_ids(eot) == (eot.eos_token_id, eot_id)
    ChatTemplateFormat(eot)  # accepted
    rollout = build_rollout([[5], [6]], [[9, eot_id], [9, 9]], 0, stop_token_ids(eot), ["", ""])
    assert rollout.stopped.tolist() == [True, False]
    eos = _with_template(tokenizer, TURNS + "{{ eos_token }}" + GEN)
    assert stop_token_ids(eos) == (eos.eos_token_id,)
    assert stop_token_ids(tokenizer) == (tokenizer.eos_token_id,)  # no template: EOS
    plain = _with_template(tokenizer, TURNS + "\n### end of turn\n" + GEN)
    with pytest.raises(UserError, match="not with a special token"):
        ChatTemplateFormat(plain)


def test_smollm2_stops_at_im_end(smollm2_tokenizer):
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in stop_token_ids(smollm2_tokenizer)
