"""Step 6 of an RL iteration (`PPOSystem`): PPO epochs over minibatches, and the optimizers they step.

A mixin of `PPOSystem`: it reads the system's runner, critic, settings and KL coefficient (set in
`PPOSystem.__init__`).
"""

from __future__ import annotations

import math

import torch

from tl_lightning.objectives.advantages import masked_mean
from tl_lightning.objectives.kl import kl_estimate
from tl_lightning.objectives.ppo import aggregate, clipped_policy_loss, data_parallel_share
from tl_lightning.systems.critics import ValueTargets
from tl_lightning.systems.policy import REFERENCE_ADAPTER
from tl_lightning.systems.ppo_rollout import Rollout, clip_each_group
from tl_lightning.systems.schedules import WarmupConstant, build_schedule


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, betas=(0.9, 0.95), weight_decay=0.0)  # the paper code's PPO optimizer


def default_schedule(optimizer: torch.optim.Optimizer) -> WarmupConstant:
    return WarmupConstant(optimizer, warmup=10)


class UpdateStage:
    """The PPO update of one iteration (`_update`) and `configure_optimizers` (actor and critic groups)."""

    def _size_schedule(self, rollout_rows: int) -> None:
        """Tell the schedule the run's optimizer steps: the update steps it once per minibatch, ppo_epochs ×
        minibatches per iteration (recomputed every iteration, so a resumed or extended run is sized right)."""
        sched = self.lr_schedulers()
        total = optimizer_steps(self.trainer.num_training_batches, self.trainer.max_epochs, self.trainer.max_steps,
                                self.ppo.ppo_epochs, math.ceil(rollout_rows / self.ppo.minibatch_size))
        if hasattr(sched, "set_total_steps") and math.isfinite(total):
            sched.set_total_steps(int(total))

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


def optimizer_steps(batches_per_epoch: float, max_epochs: int | None, max_steps: int, ppo_epochs: int,
                    minibatches: int) -> float:
    """Optimizer steps of an RL run: iterations × ppo_epochs × minibatches per iteration, capped by `max_steps`
    (which counts optimizer steps, as `global_step` does); inf for an unbounded run."""
    epochs = max_epochs if max_epochs not in (None, -1) else math.inf
    total = batches_per_epoch * epochs * ppo_epochs * minibatches
    return min(total, max_steps) if max_steps not in (None, -1) else total


def _rows(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else x[idx]
