"""RL pieces: the `Rollout` record, the PPO and KL settings, sequence assembly, per-group gradient clipping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch

from tl_lightning.objectives.kl import FixedKLController, KLController
from tl_lightning.objectives.ppo import Aggregation


@dataclass(frozen=True)
class Rollout:
    """One rollout batch. Shapes: (b, P) prompt (left-padded), (b, R) response (right-padded).

    `sequences` / `attention_mask` are (b, P + R); `response_mask` (b, R) is 1 up to and including the stop token;
    `sample_logp` (b, R) holds log q of each response token under the distribution that sampled it (None for greedy
    rollouts; Note [sampling distribution] in models/generation.py). `action_mask` (b, R), for multi-turn episodes,
    is 1 on the tokens the policy sampled and 0 on the tool outputs between its turns, which are context only (None:
    every response token was sampled). Losses, KL and advantages use `loss_mask`.
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_length: int
    texts: tuple[str, ...]
    stopped: torch.Tensor  # (b,) bool: the response ended with a stop token within max_new_tokens
    sample_logp: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None

    @property
    def loss_mask(self) -> torch.Tensor:
        """1 on the response tokens the policy sampled: what the update learns from."""
        return self.response_mask if self.action_mask is None else self.action_mask

    def rows(self, idx: torch.Tensor | slice) -> Rollout:
        """The rollout of the selected sequences (same padded width; texts are kept only for a slice)."""
        texts = self.texts[idx] if isinstance(idx, slice) else ()
        return Rollout(self.sequences[idx], self.attention_mask[idx], self.response_mask[idx], self.prompt_length,
                       texts, self.stopped[idx], *(None if x is None else x[idx] for x in (self.sample_logp,
                                                                                            self.action_mask)))

    def to(self, device: torch.device) -> Rollout:
        return Rollout(*(x.to(device) if torch.is_tensor(x) else x for x in (
            self.sequences, self.attention_mask, self.response_mask, self.prompt_length, self.texts, self.stopped,
            self.sample_logp, self.action_mask)))

    def chunks(self, size: int | None) -> list[Rollout]:
        """Consecutive row chunks of at most `size` sequences (None: the whole rollout)."""
        n = self.sequences.size(0)
        step = n if not size else size
        return [self.rows(slice(i, i + step)) for i in range(0, n, step)]


@dataclass
class PPOSettings:
    """PPO optimisation settings (paper code values as defaults where it has them)."""

    ppo_epochs: int = 1
    """Passes over each rollout batch (paper code: 1)."""
    minibatch_size: int = 8
    """Sequences per gradient step."""
    clip: float = 0.2
    """Policy ratio clip ε."""
    loss_aggregation: Aggregation = "token"
    """"token": mean over all response tokens of a minibatch; "sequence": mean of per-response means (GRPO paper)."""
    reward_clip: float = 5.0
    """Clip the rule reward to ±reward_clip (a no-op for the default table, as in the paper code)."""
    no_stop_penalty: float | None = None
    """If set, the score of a response that never emits EOS (hits max_new_tokens) is replaced by this value."""
    logprob_chunk_size: int | None = 1024
    """Response positions whose vocabulary logits exist at once (log-probs, entropy); null: the whole batch."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip, applied to the actor's and the critic's parameters separately (as the paper code)."""
    drop_uniform_groups: bool = False
    """Critic-free estimators (GRPO, RLOO): leave out of the update every group whose scores are all equal. Their
    advantages are 0, so they would only cost reference and update passes (and, with `kl.placement: loss`, pull
    toward the reference). Counted in `rollout/dropped_groups`; an iteration where every group is uniform skips the
    update."""
    critic_warmup: int = 0
    """Iterations at the start in which only the critic learns (value head, and the critic adapter of
    `AdapterCritic`): the policy's gradients are dropped, so it stays the SFT policy while the values GAE reads are
    fitted to its returns. An untrained value head makes the first advantages noise (our PPO lost to GRPO so).
    Logged as `ppo/critic_warmup` (1 while it lasts); needs a critic. The learning-rate schedule counts these steps."""
    rollout_chunk_size: int | None = None
    """Sequences generated, and passed without gradient (policy, reference, critic), at once: bounds the KV cache
    and those passes for large rollouts such as GRPO's prompts × group size. null: the whole rollout batch. With
    sampling, chunk k is seeded with the iteration's seed + k, so results depend on the chunk size."""


@dataclass
class KLSettings:
    """The KL penalty to the reference (SFT) policy."""

    controller: KLController = field(default_factory=FixedKLController)
    """How β moves: `FixedKLController` (the paper code: β = 0.4) or `AdaptiveKLController` (Ziegler et al.)."""
    estimator: Literal["k1", "k3"] = "k1"
    """In the reward: k1 = log π − log π_ref (paper code) or k3 (non-negative, lower variance)."""
    placement: Literal["reward", "loss"] = "reward"
    """"reward": −β·KL on every response token's reward (PPO, the paper); "loss": β·k3(π, π_ref) added to the
    policy loss, aggregated like it (the GRPO papers); the reward is then the rule score alone."""


class Pass(NamedTuple):
    """One forward of a rollout: final hidden states (b, P+R, h); response log-probs and entropy (b, R) or None."""

    hidden: torch.Tensor
    logp: torch.Tensor | None
    entropy: torch.Tensor | None


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left padding: positions count real tokens only, exactly as `generate` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def build_rollout(prompt_ids: list[list[int]], responses: list[list[int]], pad_id: int,
                  stop_ids: tuple[int, ...], texts: list[str], max_prompt_length: int | None = None,
                  sample_logp: list[list[float]] | None = None) -> Rollout:
    """Left-pad prompts, right-pad responses (and their sampling log-probs), concatenate, and build the masks."""
    from tl_lightning.models.generation import left_pad

    prompt, prompt_mask = left_pad(prompt_ids, pad_id, max_prompt_length)
    r = max(1, max(len(x) for x in responses))
    resp = torch.full((len(responses), r), pad_id, dtype=torch.long)
    resp_mask = torch.zeros((len(responses), r), dtype=torch.long)
    logq = None if sample_logp is None else torch.zeros((len(responses), r))
    for i, x in enumerate(responses):
        if x:
            resp[i, : len(x)] = torch.tensor(x)
            resp_mask[i, : len(x)] = 1
            if logq is not None:
                logq[i, : len(x)] = torch.tensor(sample_logp[i])
    stopped = torch.tensor([bool(x) and x[-1] in stop_ids for x in responses])
    return Rollout(torch.cat([prompt, resp], 1), torch.cat([prompt_mask, resp_mask], 1), resp_mask,
                   prompt.size(1), tuple(texts), stopped, logq)


def clip_each_group(param_groups: list[dict], max_norm: float) -> list[float]:
    """Clip the gradient norm of each optimizer parameter group separately (actor and critic, as the paper code's
    two optimizers do): a large value-loss gradient must not shrink the policy's update. Returns the norms before
    clipping, one per group (0 for a group without gradients)."""
    norms = []
    for group in param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0)
    return norms
