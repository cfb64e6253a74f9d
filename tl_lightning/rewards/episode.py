"""The reward of an online episode (pure): task success from the environment, optionally the mean IRM category
reward of its calls, optionally a small bonus for calling a tool at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EpisodeReward:
    """How an episode is scored.

    Args:
        success: reward of a task the environment scores as reached (times its `reward()` in [0, 1]).
        irm_weight: plus this times the mean call reward (`model.init_args.reward`, the IRM table by default) of
            the turns whose expected calls the environment knows (ToolWorld): dense credit for calls that are
            right or nearly right.
        call_bonus: plus this when the episode called at least one tool other than `finish`: verl's multi-turn
            quickstart collapsed to answering without tools until its reward was shaped so (PR #4998).
    """

    success: float = 1.0
    irm_weight: float = 0.0
    call_bonus: float = 0.0


def episode_score(success: float | None, call_rewards: Sequence[float], called_tool: bool,
                  reward: EpisodeReward = EpisodeReward()) -> float:
    """`reward.success × success + reward.irm_weight × mean(call_rewards) + reward.call_bonus × called_tool`;
    an environment without a goal (`success` None) and an episode without scored calls add nothing."""
    score = reward.success * (success or 0.0)
    if call_rewards:
        score += reward.irm_weight * sum(call_rewards) / len(call_rewards)
    return score + reward.call_bonus * float(called_tool)
