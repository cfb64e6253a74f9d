"""PPOSystem on the tiny NF4 checkpoint: runs, logs finite stats, stays near the reference under a constant reward,
resumes exactly, exports adapters + value head."""

from pathlib import Path

import lightning as L
import pytest
import torch

from tl_lightning.data.prompt_datamodule import ToolPromptDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.objectives.kl import FixedKLController
from tl_lightning.rewards.reward import RewardTable
from tl_lightning.systems.callbacks import HFExport
from tl_lightning.systems.critics import AdapterCritic, SharedCritic
from tl_lightning.systems.ppo import KLSettings, PPOSystem
from tl_lightning.systems.schedules import WarmupConstant

ZERO = RewardTable(**dict.fromkeys(RewardTable.__dataclass_fields__, 0.0))


CRITICS = {"shared": SharedCritic(), "adapter": AdapterCritic()}


def _system(ckpt, critic="shared", reward=RewardTable(), adapter=None, ppo=None, generation=None, **kw):
    return PPOSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32", adapter=adapter,
                                   lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                     critic=CRITICS[critic], reward=reward, kl=KLSettings(FixedKLController(0.4)),
                     generation=generation or {"max_new_tokens": 12, "do_sample": True},
                     ppo=ppo or {"ppo_epochs": 2, "minibatch_size": 2},
                     actor_lr=1e-3, critic_lr=1e-3, lr_scheduler=WarmupConstant, rollout_seed=3, **kw)


def _dm(ckpt):
    return ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=30), batch_size=4, shuffle_seed=1)


def _trainer(root, iterations, **kw):
    return L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=iterations, default_root_dir=root,
                     logger=L.pytorch.loggers.CSVLogger(root), enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, log_every_n_steps=1, **kw)


def _trainable(system):
    return {n: p.detach().clone() for n, p in system.named_parameters() if "lora_" in n or n.startswith("value_head")}


@pytest.mark.parametrize("critic", ["shared", "adapter"])
def test_ppo_runs_and_exports(tiny_checkpoint, tmp_path, critic):
    L.seed_everything(0)
    system = _system(tiny_checkpoint, critic=critic)
    trainer = _trainer(tmp_path, 2, callbacks=[HFExport()], enable_checkpointing=False)
    system.configure_model()
    before = _trainable(system)
    trainer.fit(system, _dm(tiny_checkpoint))
    after = _trainable(system)
    assert any(not torch.equal(before[n], after[n]) for n in before if ".default." in n)
    if critic == "adapter":
        assert any(not torch.equal(before[n], after[n]) for n in before if ".critic." in n)
    metrics = trainer.logged_metrics
    for k in ("reward/mean", "ppo/kl", "ppo/kl_coef", "ppo/clipfrac", "ppo/approx_kl", "ppo/entropy", "ppo/policy_loss",
              "ppo/value_loss", "ppo/explained_variance", "rollout/response_length", "rollout/no_stop_frac",
              "time/rollout", "time/score", "time/ref_value", "time/update", "reward/ts", "reward/rate/format_error"):
        assert k in metrics and torch.isfinite(torch.as_tensor(metrics[k])), k
    export = Path(trainer.log_dir) / "hf" / "final"
    assert (export / "adapter_config.json").is_file() and (export / "value_head.safetensors").is_file()
    if critic == "adapter":
        assert (export / "critic" / "adapter_config.json").is_file()


def test_constant_reward_keeps_policy_near_reference(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    system = _system(tiny_checkpoint, reward=ZERO)
    trainer = _trainer(tmp_path, 4, enable_checkpointing=False)
    trainer.fit(system, _dm(tiny_checkpoint))
    import csv

    rows = [r for r in csv.DictReader(open(Path(trainer.log_dir) / "metrics.csv")) if r.get("ppo/kl")]
    kls = [float(r["ppo/kl"]) for r in rows]
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == reference
    assert max(kls) < 0.5, kls  # only the KL penalty acts: no drift


@pytest.mark.parametrize("critic", ["shared", "adapter"])
def test_critic_warmup_trains_the_critic_while_the_policy_stays_still(tiny_checkpoint, tmp_path, critic):
    L.seed_everything(0)
    system = _system(tiny_checkpoint, critic=critic, ppo={"ppo_epochs": 2, "minibatch_size": 2, "critic_warmup": 1})
    trainer = _trainer(tmp_path, 1, enable_checkpointing=False)
    system.configure_model()
    before = _trainable(system)
    trainer.fit(system, _dm(tiny_checkpoint))
    after = _trainable(system)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and not {n for n in changed if ".default." in n}  # the policy adapter did not move
    assert any(n.startswith("value_head") for n in changed)
    assert (critic == "adapter") == any(".critic." in n for n in changed)
    assert trainer.logged_metrics["ppo/critic_warmup"] == 1.0
    assert system.iteration == 1 and not system._warming_up  # the next iteration trains the policy


def _stop_and_resume(tmp_path, make_system, make_dm, stop_after_steps):
    """Train 4 iterations straight through, and again stopped after `stop_after_steps` optimizer steps and resumed
    from the last checkpoint. Returns (uninterrupted system, resumed system, the saved checkpoint)."""

    def run(root, ckpt_path=None, cb=(), **kw):
        L.seed_everything(0)
        system = make_system()
        trainer = _trainer(root, 4, callbacks=list(cb), enable_checkpointing=bool(cb), **kw)
        trainer.fit(system, make_dm(), ckpt_path=ckpt_path)
        return system

    full = run(tmp_path / "full")
    ck = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=1)
    run(tmp_path / "a", cb=[ck], max_steps=stop_after_steps)
    saved = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)  # safe loader works
    resumed = run(tmp_path / "b", ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    a, b = _trainable(full), _trainable(resumed)
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-4, atol=1e-6)
    return full, resumed, saved


def test_resume_is_exact(tiny_checkpoint, tmp_path):
    # stop mid-run after 2 of 4 iterations: global steps count optimizer steps (2 epochs x 2 minibatches = 4 each)
    full, resumed, saved = _stop_and_resume(tmp_path, lambda: _system(tiny_checkpoint), lambda: _dm(tiny_checkpoint), 8)
    assert all("lora_" in k or k.startswith("value_head") for k in saved["state_dict"])
    assert saved["ppo_state"]["iteration"] == 2 and saved["ToolPromptDataModule"]["consumed"] == 8
    assert resumed.iteration == full.iteration == 4


def test_first_minibatch_is_on_policy_even_from_an_adapter_with_dropout(tiny_checkpoint, tmp_path):
    """One PPO epoch, one minibatch: the update sees exactly the rollout's policy (ratio 1), although the SFT adapter
    was saved with LoRA dropout 0.05 (PPO turns dropout off; with it, approx_kl was 0.017 and clipfrac 0.22)."""
    from tl_lightning.models.loading import load_policy

    L.seed_everything(0)
    sft = load_policy(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                    lora=LoraSettings(r=4, alpha=8, dropout=0.05)))
    for n, p in sft.named_parameters():
        if "lora_B" in n:  # a trained adapter, not the zero init, so that dropout would change the outputs
            torch.nn.init.normal_(p, std=0.5, generator=torch.Generator().manual_seed(len(n)))
    sft.save_pretrained(tmp_path / "sft")
    assert '"lora_dropout": 0.05' in (tmp_path / "sft" / "adapter_config.json").read_text()
    system = _system(tiny_checkpoint, adapter=str(tmp_path / "sft"), ppo={"ppo_epochs": 1, "minibatch_size": 4})
    trainer = _trainer(tmp_path, 1, enable_checkpointing=False)
    trainer.fit(system, _dm(tiny_checkpoint))
    m = trainer.logged_metrics
    assert float(m["ppo/approx_kl"]) == 0.0 and float(m["ppo/clipfrac"]) == 0.0


def _response_logprobs(logits: torch.Tensor, sequences: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """(b, R) log-probs of the response tokens from full logits: position t predicts token t + 1."""
    logp = torch.log_softmax(logits[:, prompt_length - 1: -1].float(), -1)
    return logp.gather(2, sequences[:, prompt_length:, None]).squeeze(-1)


def _response_entropy(logits: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """(b, R) entropy of the distributions the response tokens were predicted from, from full logits."""
    logp = torch.log_softmax(logits[:, prompt_length - 1: -1].float(), -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("critic", ["shared", "adapter"])
def test_memory_lean_passes_equal_the_full_logits_path(tiny_checkpoint, critic):
    """The PPO passes read only the final hidden state and apply the head to response positions in chunks; their
    log-probs, entropy, values and policy-loss gradients equal the previous full forward (all hidden states,
    full-vocabulary logits of the whole sequence)."""
    from tl_lightning.objectives.advantages import masked_mean
    from tl_lightning.systems.critics import CriticInputs
    from tl_lightning.systems.ppo_rollout import build_rollout
    from tl_lightning.systems.ppo_rollout import position_ids as _position_ids

    L.seed_everything(0)
    system = _system(tiny_checkpoint, critic=critic, ppo={"ppo_epochs": 1, "minibatch_size": 4,
                                                          "logprob_chunk_size": 5})
    system.configure_model()
    torch.nn.init.normal_(system.value_head.linear.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 500, (n,), generator=g).tolist() for n in (9, 14, 6)]
    responses = [torch.randint(3, 500, (n,), generator=g).tolist() + [2] for n in (4, 7, 2)]
    r = build_rollout(prompts, responses, 0, (2,), ["", "", ""])
    adapter = "critic" if critic == "adapter" else "default"
    system.model.set_adapter("default")
    lean = system.runner.forward(r, "default", head=True, with_entropy=True)
    values = system.critic.values(CriticInputs(system.value_head, system.runner.hidden, r, lean.hidden))
    system.model.set_adapter("default")
    full = system.model(input_ids=r.sequences, attention_mask=r.attention_mask,
                        position_ids=_position_ids(r.attention_mask), use_cache=False, output_hidden_states=True)
    torch.testing.assert_close(lean.logp, _response_logprobs(full.logits, r.sequences, r.prompt_length))
    torch.testing.assert_close(lean.entropy, _response_entropy(full.logits, r.prompt_length).detach())
    if critic == "shared":
        torch.testing.assert_close(values, system.value_head(full.hidden_states[-1], r.prompt_length))
    else:
        system.model.set_adapter(adapter)
        critic_full = system.model(input_ids=r.sequences, attention_mask=r.attention_mask,
                                   position_ids=_position_ids(r.attention_mask), output_hidden_states=True)
        torch.testing.assert_close(values, system.value_head(critic_full.hidden_states[-1], r.prompt_length))
    mask = r.response_mask.float()
    params = [p for n, p in system.model.named_parameters() if ".default." in n and "lora_" in n]
    system.model.set_adapter("default")
    for p in params:
        p.requires_grad_(True)
    g_lean = torch.autograd.grad(masked_mean(system.runner.forward(r, "default", head=True).logp, mask), params)
    system.model.set_adapter("default")
    logits = system.model(input_ids=r.sequences, attention_mask=r.attention_mask,
                          position_ids=_position_ids(r.attention_mask)).logits
    g_full = torch.autograd.grad(masked_mean(_response_logprobs(logits, r.sequences, r.prompt_length), mask), params)
    for a, b in zip(g_lean, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("critic", ["shared", "adapter"])
def test_rollout_chunks_equal_the_whole_batch(tiny_checkpoint, critic):
    """`rollout_chunk_size` bounds generation and the no-grad passes to a few sequences at a time: with greedy
    decoding the responses, log-probs, reference log-probs and values equal the whole-batch path."""
    from tl_lightning.data.batches import PromptBatch

    L.seed_everything(0)
    batch = next(iter(_dm_setup(tiny_checkpoint).train_dataloader()))
    results = []
    for chunk in (None, 3):
        system = _system(tiny_checkpoint, critic=critic, ppo={"rollout_chunk_size": chunk},
                         generation={"max_new_tokens": 6, "do_sample": False})
        system.configure_model()
        torch.nn.init.normal_(system.value_head.linear.weight, std=0.1, generator=torch.Generator().manual_seed(0))
        assert isinstance(batch, PromptBatch) and len(batch) > 3
        rollout = system._sample(batch)
        results.append((rollout, *system._reference_pass(rollout)))
    (r0, *out0), (r1, *out1) = results
    assert r0.texts == r1.texts
    torch.testing.assert_close(r0.sequences, r1.sequences)
    for a, b in zip(out0, out1):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _dm_setup(ckpt):
    dm = ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=30), batch_size=5, shuffle_seed=1)
    dm.setup("fit")
    return dm


def _grpo(ckpt, reward=RewardTable(), estimator=None, kl_placement="loss", **kw):
    from tl_lightning.objectives.estimators import GRPO

    return PPOSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                   lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                     advantage=estimator or GRPO(group_size=3), critic=None, reward=reward,
                     kl=KLSettings(FixedKLController(0.4), placement=kl_placement),
                     generation={"max_new_tokens": 12, "do_sample": True}, ppo={"ppo_epochs": 2, "minibatch_size": 6},
                     actor_lr=1e-3, lr_scheduler=WarmupConstant, rollout_seed=3, **kw)


def _small_dm(ckpt):
    return ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=30), batch_size=2, shuffle_seed=1)


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_critic_free_rl_builds_no_critic_and_exports_none(tiny_checkpoint, tmp_path, estimator):
    from tl_lightning.objectives.estimators import GRPO, RLOO

    L.seed_everything(0)
    system = _grpo(tiny_checkpoint, estimator=GRPO(group_size=3) if estimator == "grpo" else RLOO(group_size=3))
    trainer = _trainer(tmp_path, 2, callbacks=[HFExport()], enable_checkpointing=False)
    trainer.fit(system, _small_dm(tiny_checkpoint))
    assert system.value_head is None and not any(".critic." in n for n, _ in system.model.named_parameters())
    assert len(system.optimizers().param_groups) == 1  # the actor only
    assert len(system.last_samples) == 2 * 3  # 2 prompts × group of 3 samples per iteration
    export = Path(trainer.log_dir) / "hf" / "final"
    assert (export / "adapter_config.json").is_file() and not (export / "value_head.safetensors").exists()
    m = trainer.logged_metrics
    assert "ppo/explained_variance" not in m and torch.isfinite(torch.as_tensor(m["ppo/kl_loss"]))


def test_grpo_constant_reward_keeps_policy_near_reference(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    trainer = _trainer(tmp_path, 4, enable_checkpointing=False)
    trainer.fit(_grpo(tiny_checkpoint, reward=ZERO), _small_dm(tiny_checkpoint))
    import csv

    rows = [r for r in csv.DictReader(open(Path(trainer.log_dir) / "metrics.csv")) if r.get("ppo/kl")]
    kls = [float(r["ppo/kl"]) for r in rows]
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # equal rewards: every advantage is 0, only the KL loss acts
    assert max(kls) < 0.05, kls


def test_uniform_groups_are_dropped_before_the_update(tiny_checkpoint, tmp_path):
    L.seed_everything(0)
    system = _grpo(tiny_checkpoint, reward=ZERO)
    system.ppo.drop_uniform_groups = True
    system.configure_model()
    before = {n: p.detach().clone() for n, p in system.named_parameters() if ".default." in n}
    trainer = _trainer(tmp_path, 2, enable_checkpointing=False)
    trainer.fit(system, _small_dm(tiny_checkpoint))
    # every score is 0: both iterations' groups are dropped, no update runs, the adapter is untouched
    assert system.dropped_groups == 4 and system.iteration == 2
    assert all(torch.equal(before[n], p) for n, p in system.named_parameters() if n in before)
    assert trainer.logged_metrics["rollout/dropped_groups"] == 4


def test_grpo_resume_is_exact(tiny_checkpoint, tmp_path):
    # 2 of 4 iterations: 2 epochs × 1 minibatch each
    _, _, saved = _stop_and_resume(tmp_path, lambda: _grpo(tiny_checkpoint), lambda: _small_dm(tiny_checkpoint), 4)
    assert all("lora_" in k for k in saved["state_dict"]) and saved["ToolPromptDataModule"]["consumed"] == 4


def test_components_are_checked_with_one_line_errors(tiny_checkpoint):
    from tl_lightning.core.errors import UserError
    from tl_lightning.objectives.estimators import GRPO

    policy = ModelSettings(checkpoint=tiny_checkpoint)
    with pytest.raises(UserError, match="needs a critic"):
        PPOSystem(policy, critic=None)  # GAE, the default estimator
    with pytest.raises(UserError, match="critic-free"):
        PPOSystem(policy, advantage=GRPO(), critic=SharedCritic(), generation={"do_sample": True})
    with pytest.raises(UserError, match="critic_warmup"):
        PPOSystem(policy, advantage=GRPO(), critic=None, generation={"do_sample": True}, ppo={"critic_warmup": 2})
    with pytest.raises(UserError, match="do_sample"):
        PPOSystem(policy, advantage=GRPO(), critic=None)  # greedy samples of one prompt would all be equal
