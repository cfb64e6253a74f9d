"""The episode reward by hand."""

from tl_lightning.rewards.episode import EpisodeReward, episode_score


def test_episode_score_by_hand():
    shaped = EpisodeReward(success=1.0, irm_weight=0.5, call_bonus=0.1)
    # success 1, calls rewarded -2 and 1 (mean -0.5), a tool was called: 1 - 0.25 + 0.1
    assert episode_score(1.0, [-2.0, 1.0], True, shaped) == 0.85
    # failed, no scored calls, no tool: 0; an environment without a goal adds no success term
    assert episode_score(0.0, [], False, shaped) == 0.0
    assert episode_score(None, [1.0], False, shaped) == 0.5
    assert episode_score(1.0, [-2.0], True) == 1.0  # the default is task success alone
