"""Steps 1-2 of an RL iteration (`PPOSystem`): sample responses from the policy and score them with the rule reward.

A mixin of `PPOSystem`: it reads the system's runner, settings, reward and counters (set in `PPOSystem.__init__`).
"""

from __future__ import annotations

import logging
import time

import torch

from tl_lightning.data.batches import PromptBatch
from tl_lightning.objectives.advantages import informative_rows, masked_mean
from tl_lightning.rewards.reward import tool_call_rewards
from tl_lightning.systems.ppo_rollout import Rollout

log = logging.getLogger("tl_lightning.systems.ppo")


class RolloutStage:
    """Sampling and scoring: `_collect` gives the iteration's rollout, scores and categories."""

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
