"""`PPOSystem`: IRM (TL-Training stage 2) — RL with the rule-based tool-call reward on one quantized base.

Policy = LoRA adapter "default" (initialised from the SFT adapter). Reference = the SFT policy: the SFT adapter
loaded a second time, frozen, on the same quantized base (no second model); without an SFT adapter, the base with
adapters disabled. The advantage estimator is a component (`objectives.estimators`): `GAE` with a critic (PPO as
in the paper; `systems.critics`: `SharedCritic` or `AdapterCritic`), or critic-free `GRPO` / `RLOO` over groups of
samples of each prompt (`critic: null`: no critic is built, trained or saved). Manual optimisation;
`training_step` reads as numbered stages.
"""

from __future__ import annotations

import logging
import math
import random
import time

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.core.errors import UserError, as_dataclass, to_plain
from tl_lightning.data.batches import PromptBatch
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.engine import DecodeLoop, RolloutEngine
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import (
    ModelSettings,
    disable_lora_dropout,
    load_base_model,
    prepare_checkpoint,
    prepare_for_training,
)
from tl_lightning.objectives.advantages import informative_rows, masked_mean, masked_var, token_rewards
from tl_lightning.objectives.estimators import GAE, AdvantageEstimator
from tl_lightning.objectives.kl import kl_estimate
from tl_lightning.objectives.ppo import aggregate, clipped_policy_loss, data_parallel_share
from tl_lightning.rewards.reward import CallReward, RewardTable, tool_call_rewards
from tl_lightning.rewards.taxonomy import Convention
from tl_lightning.systems.critics import Critic, CriticInputs, NoCritic, SharedCritic, ValueHead, ValueTargets
from tl_lightning.systems.policy import PolicyRunner
from tl_lightning.systems.ppo_rollout import KLSettings, PPOSettings, Rollout, clip_each_group

__all__ = ["KLSettings", "PPOSettings", "PPOSystem"]
from tl_lightning.systems.schedules import WarmupConstant, build_schedule

REFERENCE_ADAPTER = "reference"
log = logging.getLogger(__name__)


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, betas=(0.9, 0.95), weight_decay=0.0)  # the paper code's PPO optimizer


def default_schedule(optimizer: torch.optim.Optimizer) -> WarmupConstant:
    return WarmupConstant(optimizer, warmup=10)


class PPOSystem(L.LightningModule):
    """RL on tool-call prompts with the IRM reward: PPO with a critic, or critic-free GRPO / RLOO.

    Args:
        policy: base checkpoint + quantization; `adapter` = the SFT adapter to start from; `lora` for a fresh one.
        advantage: `GAE` (needs a critic; the paper), `GRPO` or `RLOO` (critic-free; `group_size` samples/prompt).
        critic: the value function for GAE: `SharedCritic` (value head on the policy's hidden states) or
            `AdapterCritic` (separate LoRA adapter + value head, initialised from the SFT adapter); null for
            critic-free estimators.
        reward: the reward of a classified response (`rewards/reward.py`): `RewardTable` (the paper's IRM, a
            value per error category), `ExactMatchReward` (binary) or `PartialCreditReward` (name, keys, values).
        reward_convention: how responses are read and compared for the reward: "paper" (the reference code: the
            first call, string values only, compared exactly; free-text tools compared too) or "lenient" (the
            metrics' reading: the whole output must parse, values normalised). See docs/taxonomy.md.
        kl: KL penalty settings (controller component, estimator, reward or loss placement).
        ppo: PPO optimisation settings (epochs, minibatches, clip, loss aggregation).
        generation: rollout decoding (paper: greedy, 512 new tokens; group estimators need sampling).
        optimizer: optimizer factory over the parameter groups (default AdamW, betas (0.9, 0.95), no decay).
        lr_scheduler: schedule factory (default `WarmupConstant` with 10 warmup steps).
        actor_lr: policy adapter learning rate.
        critic_lr: critic (adapter and value head) learning rate.
        rollout_seed: seeds sampling and minibatch order per iteration (exact resume).
        free_text_tools: tools whose argument content is not scored.
        rollout_engine: generates the rollouts (default `DecodeLoop()`: shared prefixes, finished rows leave, a
            dense sampling copy on CPU; `HFGenerate` is transformers' generate). benchmarks/rollout.py measures them.
    """

    def __init__(self, policy: ModelSettings = ModelSettings(), advantage: AdvantageEstimator = GAE(),
                 critic: Critic | None = SharedCritic(), reward: CallReward = RewardTable(),
                 reward_convention: Convention = "paper", kl: KLSettings = KLSettings(),
                 ppo: PPOSettings = PPOSettings(),
                 generation: GenerationSettings = GenerationSettings(max_new_tokens=512),
                 optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None,
                 actor_lr: float = 1e-5, critic_lr: float = 5e-5, rollout_seed: int = 0,
                 free_text_tools: list[str] = sorted(FREE_TEXT_TOOLS),
                 rollout_engine: RolloutEngine | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "rollout_engine"])
        self.rollout_engine = rollout_engine or DecodeLoop()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold adapters + value head only
        self.policy_settings = as_dataclass(ModelSettings, policy)
        self.generation = as_dataclass(GenerationSettings, generation)
        self.advantage, self.critic = advantage, critic if critic is not None else NoCritic()
        self.ppo = as_dataclass(PPOSettings, ppo)
        self._check_components(critic)
        self.call_reward = as_dataclass(RewardTable, reward) if isinstance(reward, dict) else reward
        self.kl_settings = as_dataclass(KLSettings, kl)
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.free_text_tools = frozenset(free_text_tools)
        self.kl_coef = self.kl_settings.controller.coef
        self.rollout_metrics = ToolCallMetrics(free_text_tools=self.free_text_tools)
        self.model = self.tokenizer = self.runner = None
        self.value_head: ValueHead | None = None
        self.iteration = 0
        self.truncated_prompts = 0  # prompts generation cut to max_prompt_length (their tool lists lost)
        self.dropped_groups = 0  # groups left out of the update because their scores were all equal
        self.last_samples: list[dict] = []

    def _check_components(self, critic: Critic | None) -> None:
        if self.policy_settings.lora is None and self.policy_settings.adapter is None:
            raise UserError("RL trains LoRA adapters: set policy.adapter (the SFT adapter) or policy.lora")
        name = type(self.advantage).__name__
        if self.advantage.needs_critic and critic is None:
            raise UserError(f"{name} needs a critic: set model.init_args.critic (SharedCritic or AdapterCritic)")
        if self.ppo.critic_warmup and critic is None:
            raise UserError(f"ppo.critic_warmup trains a critic, and {name} has none: set ppo.critic_warmup: 0")
        if not self.advantage.needs_critic and critic is not None:
            raise UserError(f"{name} is critic-free: set model.init_args.critic: null")
        if self.generation.truncates:
            raise UserError("RL learns from the distribution that sampled: generation.top_k / top_p would truncate it "
                            "(set top_k: 0 and top_p: 1.0; temperature alone is applied to the learner too)")
        if self.advantage.group_size > 1 and not self.generation.do_sample:
            raise UserError(f"{name} compares {self.advantage.group_size} samples of each prompt: set "
                            "model.init_args.generation.do_sample: true (greedy samples would all be equal)")

    # ------------------------------------------------------------------------------------------------ models
    def prepare_data(self) -> None:
        prepare_checkpoint(self.policy_settings)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self.tokenizer = load_tokenizer(self.policy_settings.checkpoint)
        self.model = prepare_for_training(load_base_model(self.policy_settings, device), self.policy_settings)
        if self.policy_settings.adapter:
            # Reference = the SFT policy: the same adapter again, frozen, on the same 4-bit base (a few MB, no second
            # model). Disabling adapters instead would give the pre-SFT base, not the policy the paper regularises to.
            self.model.load_adapter(self.policy_settings.adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        self.value_head = self.critic.attach(self.model, self.policy_settings.adapter, device)
        disable_lora_dropout(self.model)  # on-policy updates: eval-mode rollouts == train-mode updates
        self.model.set_adapter("default")
        self.model.train()
        self.runner = PolicyRunner(self.model, self.tokenizer, self.generation, self.ppo, self.rollout_engine)

    @property
    def _reference(self) -> str | None:
        return REFERENCE_ADAPTER if self.policy_settings.adapter else None

    # -------------------------------------------------------------------------------------------- training
    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        # steps 1-2: sample responses from the policy and score them
        rollout, scores, categories, times = self._collect(batch)
        rollout, scores, categories = self._drop_uniform_groups(rollout, scores, categories)
        if not len(scores):
            return  # every group uniform: nothing to learn this iteration (counted)
        t2 = time.perf_counter()
        # step 3: log-probs of the policy and the reference (the SFT adapter), and the critic's values
        old_logp, ref_logp, old_values = self._reference_pass(rollout)
        t3 = time.perf_counter()
        # step 4: token rewards: the score on the last response token, −β·KL on every token (KL in the reward)
        mask = rollout.loss_mask.float()
        kl = kl_estimate(old_logp, ref_logp, self.kl_settings.estimator) * mask
        rewards = self._token_rewards(kl, scores, mask)
        # step 5: advantages (and the critic's returns)
        adv, returns = self.advantage.estimate(rewards, old_values, mask, self._reduce_sum)
        # step 6: PPO epochs over minibatches
        stats = self._update(rollout, old_logp, ref_logp, old_values, adv, returns)
        t4 = time.perf_counter()
        # step 7: KL controller (on the KL of all ranks' rollouts: β stays equal on every rank), logging
        seq_kl = self._all_ranks_mean(kl.sum(1).mean())
        self.kl_coef = self.kl_settings.controller.update(self.kl_coef, seq_kl, len(scores) * self.trainer.world_size)
        stats["logprob_gap"] = self._logprob_gap(rollout, old_logp)
        self._log_iteration(scores, categories, rollout, seq_kl, old_values, returns, mask, stats,
                            {**times, "ref_value": t3 - t2, "update": t4 - t3})
        self.iteration += 1

    def _drop_uniform_groups(self, rollout: Rollout, scores: torch.Tensor, categories: list[str]):
        """`ppo.drop_uniform_groups`: the rollout without the groups whose scores are all equal (logged)."""
        size = self.advantage.group_size
        if not self.ppo.drop_uniform_groups or self.advantage.needs_critic or size < 2:
            return rollout, scores, categories
        keep = informative_rows(scores, size)
        self.dropped_groups += (len(scores) - len(keep)) // size
        self.log("rollout/dropped_groups", float(self.dropped_groups), on_step=True, batch_size=len(scores))
        if len(keep) == len(scores):
            return rollout, scores, categories
        if not len(keep):
            self.iteration += 1
        return rollout.rows(keep.to(rollout.sequences.device)), scores[keep], [categories[i] for i in keep.tolist()]

    def _collect(self, batch: PromptBatch) -> tuple[Rollout, torch.Tensor, list[str], dict[str, float]]:
        """(rollout, its scores, their categories, seconds per stage) of one iteration."""
        t0 = time.perf_counter()
        self._count_truncated(batch)
        # step 1: sample responses from the policy (eval mode, no grad), advantage.group_size per prompt
        batch = batch.repeat_each(self.advantage.group_size)
        self._size_schedule(len(batch))
        rollout = self._sample(batch)
        t1 = time.perf_counter()
        # step 2: score them with the rule reward (taxonomy.classify → CallReward)
        scores, categories = self._score(batch, rollout)
        return rollout, scores, categories, {"rollout": t1 - t0, "score": time.perf_counter() - t1}

    def _sample(self, batch: PromptBatch) -> Rollout:
        # a rank's rollout is its chunks of the global batch: N ranks sample what one process would (PolicyRunner)
        return self.runner.sample(batch, self.hparams.rollout_seed * 1_000_003 + self.iteration, self.device,
                                  rank=self.global_rank)

    def _count_truncated(self, batch: PromptBatch) -> None:
        limit = self.generation.max_prompt_length
        cut = sum(len(ids) > limit for ids in batch.input_ids)
        if cut and not self.truncated_prompts:
            log.warning("%d prompts of this rollout exceed generation.max_prompt_length=%d and lose their head (the "
                        "tool list); set data.init_args.max_prompt_length to skip such prompts (counted in "
                        "rollout/truncated_prompts)", cut, limit)
        self.truncated_prompts += cut

    def _size_schedule(self, rollout_rows: int) -> None:
        """Tell the schedule the run's optimizer steps: the update steps it once per minibatch, ppo_epochs ×
        minibatches per iteration (recomputed every iteration, so a resumed or extended run is sized right)."""
        sched = self.lr_schedulers()
        total = optimizer_steps(self.trainer.num_training_batches, self.trainer.max_epochs, self.trainer.max_steps,
                                self.ppo.ppo_epochs, math.ceil(rollout_rows / self.ppo.minibatch_size))
        if hasattr(sched, "set_total_steps") and math.isfinite(total):
            sched.set_total_steps(int(total))

    def _reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over data-parallel ranks (the tensor itself on one device)."""
        return self.trainer.strategy.reduce(x.detach().clone(), reduce_op="sum")

    def _all_ranks_mean(self, x: torch.Tensor) -> float:
        return float(self.trainer.strategy.reduce(x.detach().float(), reduce_op="mean"))

    def _logprob_gap(self, rollout: Rollout, learner_logp: torch.Tensor) -> float:
        """mean |log q − log π| over sampled tokens: q the distribution that sampled, π the learner's (Note
        [sampling distribution]); ~0 unless sampler and learner disagree (numerics, kernels, a changed policy)."""
        if rollout.sample_logp is None:
            return float("nan")  # greedy: no sampled distribution to compare with
        return masked_mean((rollout.sample_logp - learner_logp).abs(), rollout.loss_mask.float()).item()

    def _score(self, batch: PromptBatch, rollout: Rollout) -> tuple[torch.Tensor, list[str]]:
        rewards, classified = tool_call_rewards(rollout.texts, batch.conversations, self.call_reward,
                                                self.hparams.reward_convention, self.free_text_tools)
        cats = [c.category for c in classified]
        scores = torch.tensor(rewards, device=self.device)
        scores = scores.clamp(-self.ppo.reward_clip, self.ppo.reward_clip)
        if self.ppo.no_stop_penalty is not None:
            scores = torch.where(rollout.stopped.to(self.device), scores,
                                 torch.full_like(scores, self.ppo.no_stop_penalty))
        self.rollout_metrics.update_classified(classified)
        self.last_samples = [{"iteration": self.iteration, "prompt_id": c.id, "response": t, "category": k,
                              "reward": float(s)}
                             for c, t, k, s in zip(batch.conversations, rollout.texts, cats, scores)]
        return scores, cats

    @torch.no_grad()
    def _reference_pass(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        old_logp, ref_logp, values = [], [], []
        for part in rollout.chunks(self.ppo.rollout_chunk_size):
            pol = self.runner.forward(part, "default", head=True)
            values.append(self.critic.values(self._critic_inputs(part, pol.hidden)))
            old_logp.append(pol.logp)
            ref_logp.append(self.runner.forward(part, self._reference, head=True).logp)
        old_values = None if values[0] is None else torch.cat(values)
        return torch.cat(old_logp), torch.cat(ref_logp), old_values

    def _critic_inputs(self, rows: Rollout, policy_hidden: torch.Tensor) -> CriticInputs:
        return CriticInputs(self.value_head, self.runner.hidden, rows, policy_hidden)

    def _token_rewards(self, kl: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kl_coef = self.kl_coef if self.kl_settings.placement == "reward" else 0.0
        return token_rewards(scores, mask, kl, kl_coef)

    def _update(self, rollout: Rollout, old_logp, ref_logp, old_values, adv, returns) -> dict[str, float]:
        opt, sched = self.optimizers(), self.lr_schedulers()
        self.model.train()
        n = rollout.sequences.size(0)
        sums: dict[str, float] = {}
        steps = 0
        seed = (self.hparams.rollout_seed * 7_919 + self.iteration) * 65_537 + self.global_rank
        g = torch.Generator().manual_seed(seed)  # minibatch order
        for _ in range(self.ppo.ppo_epochs):
            for idx in torch.randperm(n, generator=g).split(self.ppo.minibatch_size):
                stats = self._minibatch_step(opt, rollout.rows(idx), old_logp[idx], ref_logp[idx],
                                             _rows(old_values, idx), adv[idx], _rows(returns, idx))
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
                sched.step()
        return {k: v / max(1, steps) for k, v in sums.items()}

    def _minibatch_step(self, opt, mb: Rollout, old_logp, ref_logp, old_values, adv, returns) -> dict[str, float]:
        mask = mb.loss_mask.float()
        how = self.ppo.loss_aggregation
        opt.zero_grad()
        out = self.runner.forward(mb, "default", head=True, with_entropy=True)
        pg_loss, clipfrac, approx_kl = clipped_policy_loss(out.logp, old_logp, adv, mask, self.ppo.clip, how)
        kl_loss = aggregate(kl_estimate(out.logp, ref_logp, "k3"), mask, how)  # β·k3 in the loss, if placed there
        loss = pg_loss + self.kl_coef * kl_loss if self.kl_settings.placement == "loss" else pg_loss
        loss = loss * self._rank_share(mask, how)
        vf_loss, vf_clipfrac = self.critic.backward(self._critic_inputs(mb, out.hidden),
                                                    ValueTargets(old_values, returns, mask), loss, self.manual_backward)
        if self._warming_up:
            for p in opt.param_groups[0]["params"]:  # the actor's group: no gradient, so AdamW leaves it as it is
                p.grad = None
        norms = clip_each_group(opt.param_groups, self.ppo.max_grad_norm) + [0.0]
        opt.step()
        return {"lr": opt.param_groups[0]["lr"], "policy_loss": pg_loss.item(), "value_loss": vf_loss.item(),
                "clipfrac": clipfrac.item(),
                "approx_kl": approx_kl.item(), "entropy": masked_mean(out.entropy, mask).item(),
                "value_clipfrac": vf_clipfrac.item(), "kl_loss": kl_loss.item(), "actor_grad_norm": norms[0],
                "critic_grad_norm": norms[1]}

    @property
    def _warming_up(self) -> bool:
        """`ppo.critic_warmup`: this iteration trains the critic only."""
        return self.iteration < self.ppo.critic_warmup

    def _rank_share(self, mask: torch.Tensor, how: str) -> torch.Tensor:
        """Data parallelism averages the ranks' gradients; this factor makes that average the gradient of the mean
        over all ranks' tokens (or responses), not the mean of the ranks' means (Note [loss aggregation])."""
        if self.trainer.world_size == 1:
            return mask.new_ones(())
        local = mask.sum() if how == "token" else (mask.sum(1) > 0).sum().to(mask.dtype)
        return data_parallel_share(local, self._reduce_sum(local), self.trainer.world_size)

    def _log_iteration(self, scores, categories, rollout: Rollout, seq_kl, values, returns, mask, stats, times) -> None:
        logs = {"reward/mean": scores.mean().item(), "ppo/kl": seq_kl, "ppo/kl_coef": self.kl_coef,
                "rollout/response_length": mask.sum(1).mean().item(),
                "rollout/no_stop_frac": 1 - rollout.stopped.float().mean().item(),
                "rollout/logprob_gap": stats.pop("logprob_gap"), "rollout/truncated_prompts": self.truncated_prompts,
                "ppo/critic_warmup": float(self._warming_up),

                **{f"ppo/{k}": v for k, v in stats.items()}, **{f"time/{k}": v for k, v in times.items()}}
        if values is not None:
            explained = 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp_min(1e-8)
            logs["ppo/explained_variance"] = explained.item()
        logs.update({f"reward/{k}": float(v) for k, v in self.rollout_metrics.compute().items()})
        self.rollout_metrics.reset()
        logs = {k: v for k, v in logs.items() if not math.isnan(v)}  # greedy rollouts have no logprob gap
        self.log_dict(logs, on_step=True, batch_size=len(categories), sync_dist=self.trainer.world_size > 1)

    # ------------------------------------------------------------------------------------------ optimizers
    def _param_groups(self) -> list[dict]:
        actor = [p for n, p in self.model.named_parameters() if "lora_" in n and ".default." in n]
        groups = [{"params": actor, "lr": self.hparams.actor_lr}]
        critic = (list(self.value_head.parameters()) if self.value_head is not None else []) + \
            self.critic.adapter_parameters(self.model)
        return groups + ([{"params": critic, "lr": self.hparams.critic_lr}] if critic else [])

    def configure_optimizers(self):
        for n, p in self.model.named_parameters():
            if "lora_" in n and f".{REFERENCE_ADAPTER}." not in n:
                p.requires_grad_(True)
        opt = (self.optimizer_factory or default_optimizer)(self._param_groups())
        # a first estimate (one minibatch per iteration); training_step sizes it once it knows the rollout size
        sched = build_schedule(self.scheduler_factory, opt, int(self.trainer.estimated_stepping_batches)
                               * self.ppo.ppo_epochs, default_schedule)
        return [opt], [sched]

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # trainable adapters + value head only (the frozen reference adapter is reloaded from the SFT directory)
        def keep(k: str) -> bool:
            return ("lora_" in k and f".{REFERENCE_ADAPTER}." not in k) or k.startswith("value_head.")

        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if keep(k)}
        checkpoint["ppo_state"] = {"kl_coef": self.kl_coef, "iteration": self.iteration,
                                   "truncated_prompts": self.truncated_prompts,
                                   "python_rng": random.getstate(), "torch_rng": torch.get_rng_state()}
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ppo_state", {})
        if state:
            self.kl_coef = float(state["kl_coef"])
            self.iteration = int(state["iteration"])
            self.truncated_prompts = int(state.get("truncated_prompts", 0))
            random.setstate(state["python_rng"])
            torch.set_rng_state(state["torch_rng"])


def optimizer_steps(batches_per_epoch: float, max_epochs: int | None, max_steps: int, ppo_epochs: int,
                    minibatches: int) -> float:
    """Optimizer steps of an RL run: iterations × ppo_epochs × minibatches per iteration, capped by `max_steps`
    (which counts optimizer steps, as `global_step` does); inf for an unbounded run."""
    epochs = max_epochs if max_epochs not in (None, -1) else math.inf
    total = batches_per_epoch * epochs * ppo_epochs * minibatches
    return min(total, max_steps) if max_steps not in (None, -1) else total


def _rows(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else x[idx]
