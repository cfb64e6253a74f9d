"""`PPOSystem`: IRM (TL-Training stage 2) — RL with the rule-based tool-call reward on one quantized base.

Policy = LoRA adapter "default" (initialised from the SFT adapter). Reference = the SFT policy: the SFT adapter
loaded a second time, frozen, on the same quantized base (no second model); without an SFT adapter, the base with
adapters disabled. The advantage estimator is a component (`objectives.estimators`): `GAE` with a critic (PPO as
in the paper; `systems.critics`: `SharedCritic` or `AdapterCritic`), or critic-free `GRPO` / `RLOO` over groups of
samples of each prompt (`critic: null`: no critic is built, trained or saved). Manual optimisation;
`training_step` reads as numbered stages: sampling and scoring live in `ppo_collect.py`, the PPO update and the
optimizers in `ppo_update.py`.
"""

from __future__ import annotations

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
from tl_lightning.objectives.advantages import masked_var, token_rewards
from tl_lightning.objectives.estimators import GAE, AdvantageEstimator
from tl_lightning.objectives.kl import kl_estimate
from tl_lightning.rewards.reward import CallReward, RewardTable
from tl_lightning.rewards.taxonomy import Convention
from tl_lightning.systems.critics import Critic, CriticInputs, NoCritic, SharedCritic, ValueHead
from tl_lightning.systems.policy import REFERENCE_ADAPTER, PolicyRunner
from tl_lightning.systems.ppo_collect import RolloutStage
from tl_lightning.systems.ppo_rollout import KLSettings, PPOSettings, Rollout
from tl_lightning.systems.ppo_update import UpdateStage, optimizer_steps

__all__ = ["KLSettings", "PPOSettings", "PPOSystem", "optimizer_steps"]


class PPOSystem(RolloutStage, UpdateStage, L.LightningModule):
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

    def _reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over data-parallel ranks (the tensor itself on one device)."""
        return self.trainer.strategy.reduce(x.detach().clone(), reduce_op="sum")

    def _all_ranks_mean(self, x: torch.Tensor) -> float:
        return float(self.trainer.strategy.reduce(x.detach().float(), reduce_op="mean"))

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


