"""`OnlineRLSystem`: online multi-turn RL. The policy calls tools in an environment, reads their outputs (errors
included), goes on, and is rewarded for finishing the task.

Everything after the episodes is `PPOSystem`'s: reference log-probs, KL, advantages (GRPO / RLOO over the G
episodes of a task, or GAE with a critic), PPO epochs. What differs is what an iteration collects: episodes
(`systems/episodes.py`) instead of single replies, a `Rollout` whose `action_mask` leaves tool outputs out of the
loss, and the episode reward (`rewards/episode.py`) on the last sampled token. GAE steps over tool outputs to the
next sampled token (`objectives.advantages.gae`), so earlier actions get the final reward.

Validation and `main.py test` run greedy episodes on held-out tasks and report task success with a 95% bootstrap
interval (test: `episodes.json` in the log dir).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from tl_lightning.core.errors import as_dataclass
from tl_lightning.data.tokenization import tokenization_gap
from tl_lightning.envs.datamodule import TaskBatch
from tl_lightning.envs.environment import gold_episode
from tl_lightning.metrics.intervals import bootstrap_interval
from tl_lightning.rewards.episode import EpisodeReward, episode_score
from tl_lightning.systems.episodes import (
    ENDINGS,
    Episode,
    EpisodeSettings,
    episode_rollout,
    run_episodes,
    turn_stop_text,
)
from tl_lightning.systems.ppo import PPOSystem
from tl_lightning.systems.ppo_rollout import Rollout

log = logging.getLogger(__name__)


class OnlineRLSystem(PPOSystem):
    """Online multi-turn RL on an environment's tasks (`envs.datamodule.EpisodeDataModule`).

    Args:
        episode: turn cap and token budget of an episode.
        episode_reward: task success, optional per-call IRM reward (`reward`, the category table) and tool-call
            bonus.
        **kwargs: `PPOSystem`'s arguments (policy, advantage, critic, reward, kl, ppo, generation, ...).
    """

    def __init__(self, episode: EpisodeSettings = EpisodeSettings(), episode_reward: EpisodeReward = EpisodeReward(),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.episode = as_dataclass(EpisodeSettings, episode)
        self.episode_reward = as_dataclass(EpisodeReward, episode_reward)
        self.evaluated: list[Episode] = []
        self.tokenization_checked = False

    def _check_tokenization(self, batch: TaskBatch) -> None:
        """Episodes append tool outputs as token ids: check on the gold episodes of the first batch's tasks that
        this stream is the full render's tokenization, and report where it is not (the model then sees slightly
        different tokens than in SFT). Once per run."""
        self.tokenization_checked = True
        env, renderer = batch.environment, batch.renderer
        stop = turn_stop_text(renderer, self.tokenizer)
        try:
            convs = [t.conversation(gold_episode(env, t)) for t in batch.tasks]
        except ValueError as e:
            log.info("tokenization check skipped: %s", e)
            return
        gaps = [tokenization_gap(renderer, self.tokenizer, c, stop) for c in convs]
        if any(g is not None for g in gaps):
            log.warning("turn-by-turn tokens differ from the full render of %d of %d gold episodes (first token "
                        "positions %s): episodes see tokens SFT did not", sum(g is not None for g in gaps), len(gaps),
                        gaps)
        else:
            log.info("tokenization check: turn-by-turn tokens equal the full render on %d gold episodes", len(gaps))

    # -------------------------------------------------------------------------------------------- training
    def _collect(self, batch: TaskBatch) -> tuple[Rollout, torch.Tensor, list[str], dict[str, float]]:
        t0 = time.perf_counter()
        if not self.tokenization_checked:
            self._check_tokenization(batch)
        tasks = [t for t in batch.tasks for _ in range(self.advantage.group_size)]
        self._size_schedule(len(tasks))
        seed = (self.hparams.rollout_seed * 1_000_003 + self.iteration) * 101
        episodes = run_episodes(self.runner, batch.renderer, tasks, batch.environment, self.episode, seed)
        rollout = self._rollout(episodes)
        t1 = time.perf_counter()
        scores = torch.tensor([self._score_episode(e) for e in episodes], device=self.device)
        scores = scores.clamp(-self.ppo.reward_clip, self.ppo.reward_clip)
        for e in episodes:
            self.rollout_metrics.update_classified(e.classified)
        self.last_samples = [{"iteration": self.iteration, "prompt_id": e.task.id, "response": t, "ended": e.ended,
                              "reward": float(s)} for e, t, s in zip(episodes, rollout.texts, scores)]
        self.log_dict(episode_stats(episodes, "episode"), on_step=True, batch_size=len(episodes))
        return rollout, scores, [e.ended for e in episodes], {"rollout": t1 - t0, "score": time.perf_counter() - t1}

    def _rollout(self, episodes: list[Episode]) -> Rollout:
        texts = [self.tokenizer.decode(e.tokens, skip_special_tokens=True) for e in episodes]
        return episode_rollout(episodes, self.tokenizer.pad_token_id, self.runner.stop_ids, texts,
                               self.generation.do_sample).to(self.device)

    def _score_episode(self, e: Episode) -> float:
        calls = [self.call_reward.score(c, self.hparams.reward_convention) for c in e.classified]
        return episode_score(e.env.reward(), calls, e.called_tool, self.episode_reward)

    # ---------------------------------------------------------------------------------------- evaluation
    def _greedy_episodes(self, batch: TaskBatch) -> list[Episode]:
        greedy = replace(self.generation, do_sample=False)
        return run_episodes(self.runner, batch.renderer, batch.tasks, batch.environment, self.episode, 0, greedy)

    def on_validation_epoch_start(self) -> None:
        self.evaluated = []

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self.evaluated += self._greedy_episodes(batch)

    def on_validation_epoch_end(self) -> None:
        if self.evaluated:
            self.log_dict(episode_stats(self.evaluated, "val"), batch_size=len(self.evaluated))

    def on_test_epoch_start(self) -> None:
        self.evaluated = []

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self.evaluated += self._greedy_episodes(batch)

    def on_test_epoch_end(self) -> None:
        stats = episode_stats(self.evaluated, "test")
        self.log_dict(stats, batch_size=max(1, len(self.evaluated)))
        summary = episode_summary(self.evaluated)
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "episodes.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
        lo, hi = summary["ci95"]
        print(f"\nTask success {summary['success_rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {summary['episodes']} "
              f"episodes; written to {out}")


def episode_summary(episodes: list[Episode]) -> dict:
    """Task success with its 95% bootstrap interval, per-task outcomes (in task order, for paired comparisons),
    turns, tool use and how episodes ended."""
    success = [float(e.env.reward() or 0.0) for e in episodes]
    n, calls = max(1, len(episodes)), sum(e.env.calls_made for e in episodes)
    return {"episodes": len(episodes), "success_rate": sum(success) / n, "ci95": list(bootstrap_interval(success)),
            "turns": sum(e.turns for e in episodes) / n, "call_rate": sum(e.called_tool for e in episodes) / n,
            "failure_rate": sum(e.env.calls_failed for e in episodes) / calls if calls else None,
            "unparsed_replies": sum(e.unparsed for e in episodes), "sampled_tokens": sum(sum(e.sampled)
                                                                                           for e in episodes),
            "ended": {k: sum(e.ended == k for e in episodes) for k in ENDINGS},
            "task_ids": [e.task.id for e in episodes], "successes": success}


def episode_stats(episodes: list[Episode], prefix: str) -> dict[str, float]:
    """Task success, tool-call and failure rates, turns per episode and how episodes ended."""
    n = max(1, len(episodes))
    calls = sum(e.env.calls_made for e in episodes)
    stats = {f"{prefix}/success_rate": sum(float(e.env.reward() or 0.0) for e in episodes) / n,
             "tools/call_rate": sum(e.called_tool for e in episodes) / n,
             "tools/failure_rate": sum(e.env.calls_failed for e in episodes) / calls if calls else math.nan,
             "tools/unparsed_replies": sum(e.unparsed for e in episodes) / n,
             f"{prefix}/turns": sum(e.turns for e in episodes) / n}
    stats.update({f"{prefix}/ended_{k}": sum(e.ended == k for e in episodes) / n for k in ENDINGS})
    if prefix != "episode":
        stats = {k if k.startswith(prefix) else f"{prefix}/{k}": v for k, v in stats.items()}
    return {k: v for k, v in stats.items() if not math.isnan(v)}
