"""PPO math: hand-computed GAE and losses, KL estimators, controllers, whitening invariants."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.objectives.advantages import gae, masked_mean, token_rewards, whiten
from tl_lightning.objectives.kl import AdaptiveKLController, FixedKLController, kl_estimate
from tl_lightning.objectives.ppo import aggregate, clipped_policy_loss, clipped_value_loss, data_parallel_share


def test_gae_hand_computed():
    # one sequence, 3 response tokens, gamma=1, lam=0.5; rewards r=[0, 0, 1], values V=[0.5, 0.2, 0.4]
    # deltas: d2 = 1 + 0 - 0.4 = 0.6; d1 = 0 + 0.4 - 0.2 = 0.2; d0 = 0 + 0.2 - 0.5 = -0.3
    # A2 = 0.6; A1 = 0.2 + 0.5*0.6 = 0.5; A0 = -0.3 + 0.5*0.5 = -0.05
    adv, ret = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.2, 0.4]]), torch.ones(1, 3), gamma=1.0,
                   lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[-0.05, 0.5, 0.6]]))
    torch.testing.assert_close(ret, torch.tensor([[0.45, 0.7, 1.0]]))


def test_gae_masks_padding_and_gamma_lambda_one_is_reward_to_go_minus_value():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.float32)
    adv, ret = gae(r, v, mask, gamma=1.0, lam=1.0)
    to_go = torch.flip(torch.cumsum(torch.flip(r * mask, [1]), 1), [1])
    torch.testing.assert_close(adv, (to_go - v) * mask)
    torch.testing.assert_close(ret, to_go * mask)
    adv2, _ = gae(r + 100 * (1 - mask), v + 100 * (1 - mask), mask)  # values at padding do not leak
    torch.testing.assert_close(adv2, gae(r, v, mask)[0])


def test_clipped_policy_loss_cases():
    mask = torch.ones(1, 2)
    adv = torch.tensor([[1.0, -2.0]])
    same = torch.zeros(1, 2)
    loss, clipfrac, kl = clipped_policy_loss(same, same, adv, mask)
    assert loss.item() == pytest.approx(0.5)  # -mean(A) = -(1 - 2)/2
    assert clipfrac.item() == 0 and kl.item() == 0
    # ratio 1.5 on both: token 0 (A=1): max(-1.5, -1.2) = -1.2 (clipped); token 1 (A=-2): max(3, 2.4) = 3
    logp = torch.log(torch.tensor([[1.5, 1.5]]))
    loss, clipfrac, _ = clipped_policy_loss(logp, same, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 3.0) / 2) and clipfrac.item() == pytest.approx(0.5)


def test_clipped_value_loss_hand_computed():
    # V=1.0, old=0.5, R=2: clipped V=0.7; max((1-2)^2, (0.7-2)^2) = 1.69; loss = 0.5*1.69
    loss, frac = clipped_value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.ones(1,
                                                                                                                    1))
    assert loss.item() == pytest.approx(0.845) and frac.item() == 1.0


def test_kl_estimators():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(4, 5, generator=g)
    assert torch.all(kl_estimate(lp, lp, "k1") == 0) and torch.all(kl_estimate(lp, lp, "k3") == 0)
    other = lp + torch.randn(4, 5, generator=g)
    assert torch.all(kl_estimate(lp, other, "k3") >= 0)
    assert kl_estimate(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25)),
                       "k1").item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        kl_estimate(lp, lp, "k9")


def test_kl_controllers():
    fixed = FixedKLController(0.4)
    assert fixed.update(fixed.coef, 10.0, 8) == 0.4
    adaptive = AdaptiveKLController(0.1, target=1.0, horizon=100)
    up = adaptive.update(adaptive.coef, 5.0, 10)      # KL above target -> beta grows: 0.1 * (1 + 0.2 * 10/100)
    down = adaptive.update(adaptive.coef, 0.1, 10)    # below -> shrinks: 0.1 * (1 - 0.2 * 10/100)
    assert up == pytest.approx(0.102) and down == pytest.approx(0.098)
    assert adaptive.update(up, 5.0, 10) == pytest.approx(0.102 * 1.02)  # stateless: the system carries beta


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 4), t=st.integers(2, 8))
def test_whiten_invariants(seed, b, t):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, generator=g) * 5 + 3
    mask = (torch.rand(b, t, generator=g) < 0.7).float()
    mask[0, :2] = 1
    w = whiten(x, mask)
    assert abs(masked_mean(w, mask).item()) < 1e-4
    assert torch.all(w[mask == 0] == 0)
    x2 = x.clone()
    x2[mask == 0] = 1e6  # values at masked positions do not change the result
    torch.testing.assert_close(whiten(x2, mask), w)
    assert masked_mean(whiten(x, mask, keep_mean=True), mask).item() == pytest.approx(masked_mean(x, mask).item(),
                                                                                      abs=1e-4)


def test_actor_and_critic_gradients_are_clipped_separately():
    from tl_lightning.systems.ppo_rollout import clip_each_group

    actor, critic = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    actor.grad, critic.grad = torch.tensor([0.3, 0.4]), torch.tensor([60.0, 80.0])  # norms 0.5 and 100
    norms = clip_each_group([{"params": [actor]}, {"params": [critic]}], max_norm=1.0)
    assert norms == pytest.approx([0.5, 100.0])
    torch.testing.assert_close(actor.grad, torch.tensor([0.3, 0.4]))  # one shared norm would have scaled it by 1/100
    torch.testing.assert_close(critic.grad, torch.tensor([0.6, 0.8]))
    actor.grad, critic.grad = torch.tensor([0.3, 0.4]), torch.tensor([60.0, 80.0])
    torch.nn.utils.clip_grad_norm_([actor, critic], 1.0)  # what the PPO step did before: one norm for both
    assert actor.grad.norm() < 0.01


def test_data_parallel_share_makes_the_rank_average_the_global_token_mean():
    # rank 0: 3 tokens of loss 1, 2, 3; rank 1: 5 tokens of loss 4 each. Global token mean: (6 + 20) / 8 = 3.25.
    x0, m0 = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]])
    x1, m1 = torch.full((1, 5), 4.0), torch.ones(1, 5)
    total = m0.sum() + m1.sum()
    shares = [data_parallel_share(m.sum(), total, 2) for m in (m0, m1)]
    assert [s.item() for s in shares] == [0.75, 1.25]  # 2·3/8 and 2·5/8
    ddp_average = (shares[0] * aggregate(x0, m0) + shares[1] * aggregate(x1, m1)) / 2
    assert ddp_average.item() == pytest.approx(3.25)
    assert ((aggregate(x0, m0) + aggregate(x1, m1)) / 2).item() == pytest.approx(3.0)  # the unscaled mean of means


def test_whiten_over_ranks_equals_whitening_the_union_batch():
    g = torch.Generator().manual_seed(0)
    x, m = torch.randn(4, 5, generator=g), (torch.rand(4, 5, generator=g) > 0.3).float()
    whole = whiten(x, m)
    n, mu = m.sum(), (x * m).sum() / m.sum()
    for rows in (slice(0, 2), slice(2, 4)):  # each "rank" holds two rows; the reduce returns the union's sums
        union_sums = iter([n, (x * m).sum(), ((x - mu) ** 2 * m).sum()])
        part = whiten(x[rows], m[rows], reduce_sum=lambda _local: next(union_sums))
        torch.testing.assert_close(part, whole[rows])
    assert not torch.allclose(whiten(x[:2], m[:2]), whole[:2])  # rank-local statistics would differ
    torch.testing.assert_close(whiten(x, m, reduce_sum=lambda t: t), whole)  # one process: the same numbers


def test_gae_steps_over_tool_outputs_so_earlier_actions_get_the_final_reward():
    # an episode: sampled tokens 0-1, a tool output at 2-3 (mask 0), sampled tokens 4-5, padding at 6
    mask = torch.tensor([[1.0, 1, 0, 0, 1, 1, 0]])
    rewards = token_rewards(torch.tensor([1.0]), mask)
    assert rewards.tolist() == [[0, 0, 0, 0, 0, 1.0, 0]]  # the score sits on the last sampled token, not on padding
    # gamma = lam = 1, values 0: every sampled token's advantage is the final reward
    adv, _ = gae(rewards, torch.zeros(1, 7), mask, gamma=1.0, lam=1.0)
    assert adv.tolist() == [[1.0, 1.0, 0, 0, 1.0, 1.0, 0]]
    # by hand with values V = [0.5, 0.2, 9, 9, 0.4, 0.1, 9] (9s are masked), gamma 1, lam 0.5; the next state of
    # token 1 is token 4: d5 = 1 - 0.1 = 0.9; d4 = 0.1 - 0.4 = -0.3; d1 = 0.4 - 0.2 = 0.2; d0 = 0.2 - 0.5 = -0.3
    # A5 = 0.9; A4 = -0.3 + 0.45 = 0.15; A1 = 0.2 + 0.075 = 0.275; A0 = -0.3 + 0.1375 = -0.1625
    values = torch.tensor([[0.5, 0.2, 9, 9, 0.4, 0.1, 9]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[-0.1625, 0.275, 0, 0, 0.15, 0.9, 0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.3375, 0.475, 0, 0, 0.55, 1.0, 0]]))


def test_token_rewards_put_the_kl_penalty_on_every_token():
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    got = token_rewards(torch.tensor([2.0, -1.0]), mask, kl, kl_coef=0.5)
    torch.testing.assert_close(got, torch.tensor([[-0.05, -0.1, 1.85], [-1.25, 0.0, 0.0]]))


def test_informative_rows_leave_out_groups_with_equal_scores():
    from tl_lightning.objectives.advantages import informative_rows

    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, -2.0, -2.0])  # groups of 2: equal, varied, equal
    assert informative_rows(scores, 2).tolist() == [2, 3]
    assert informative_rows(torch.zeros(4), 2).tolist() == []
