"""Group-relative advantages (GRPO, Dr. GRPO, RLOO), loss aggregation and the estimator components: hand-computed
cases and invariants (degenerate groups, masking)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.objectives.advantages import group_advantages, sequence_advantages_to_tokens
from tl_lightning.objectives.estimators import GAE, GRPO, RLOO
from tl_lightning.objectives.ppo import aggregate


def test_group_advantages_hand_computed():
    scores = torch.tensor([1.0, -2.0, 1.0, -2.0,   0.5, 0.5, 0.5, 0.5])  # two prompts × 4 samples
    # group 1: mean -0.5, sample std sqrt(((1.5)^2 * 2 + (1.5)^2 * 2) / 3) = sqrt(3) = 1.7320508
    grpo = group_advantages(scores, 4, "mean", scale_by_std=True, eps=0.0)
    torch.testing.assert_close(grpo[:4], torch.tensor([1.5, -1.5, 1.5, -1.5]) / 3 ** 0.5)
    dr = group_advantages(scores, 4, "mean", scale_by_std=False)  # Dr. GRPO: no std scaling
    torch.testing.assert_close(dr[:4], torch.tensor([1.5, -1.5, 1.5, -1.5]))
    # RLOO: 1 − mean(-2, 1, -2) = 1 + 1 = 2; -2 − mean(1, 1, -2) = -2 − 0 = -2
    rloo = group_advantages(scores, 4, "leave_one_out")
    torch.testing.assert_close(rloo[:4], torch.tensor([2.0, -2.0, 2.0, -2.0]))
    for adv in (grpo, dr, rloo):  # an all-equal group teaches nothing, and gives no NaN
        assert torch.equal(adv[4:], torch.zeros(4))


def test_grpo_cannot_tell_irm_from_binary_in_a_group_of_two_outcomes():
    """Why the study's GRPO arms with the IRM and the binary reward trained almost the same adapter
    (docs/real_model.md): std-scaled advantages ignore any increasing affine change of a group's rewards, and a
    group of 4 samples mostly holds at most two outcomes. Only a group with two different errors tells them apart."""
    irm = torch.tensor([1.0, -1.5, -1.5, -1.5,   1.0, 1.0, -2.0, 1.0,   -1.5, -2.0, -1.5, 1.0])
    binary = torch.tensor([1.0, 0.0, 0.0, 0.0,   1.0, 1.0, 0.0, 1.0,   0.0, 0.0, 0.0, 1.0])
    a_irm, a_binary = (group_advantages(r, 4, "mean", scale_by_std=True, eps=0.0) for r in (irm, binary))
    # groups 1 and 2: right vs one kind of error; group 1 by hand: mean -0.875, deviations 1.875, -0.625 (x3),
    # sample std sqrt((1.875^2 + 3 * 0.625^2) / 3) = 1.25
    torch.testing.assert_close(a_irm[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    torch.testing.assert_close(a_irm[:8], a_binary[:8])
    # group 3: a wrong tool (-1.5) and a hallucinated one (-2.0) differ under IRM, not under the binary reward
    assert a_irm[8] > a_irm[9] and a_binary[8] == a_binary[9]


@settings(max_examples=50, deadline=None)
@given(groups=st.integers(1, 4), size=st.integers(2, 6), seed=st.integers(0, 1000))
def test_group_advantages_sum_to_zero_per_group(groups, size, seed):
    scores = torch.randn(groups * size, generator=torch.Generator().manual_seed(seed))
    for kind in ("mean", "leave_one_out"):
        adv = group_advantages(scores, size, kind, scale_by_std=False)
        assert torch.allclose(adv.view(groups, size).sum(1), torch.zeros(groups), atol=1e-5)
        assert torch.isfinite(adv).all()
    # RLOO = GRPO-without-std scaled by G/(G-1): s - (S - s)/(G-1) = (G s - S)/(G-1) = G/(G-1) (s - S/G)
    torch.testing.assert_close(group_advantages(scores, size, "leave_one_out"),
                               group_advantages(scores, size, "mean", scale_by_std=False) * size / (size - 1))


def test_sequence_advantages_mask_padding_and_post_stop_tokens():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)  # response 2 stopped after one token
    tokens = sequence_advantages_to_tokens(torch.tensor([0.5, -1.0]), mask)
    torch.testing.assert_close(tokens, torch.tensor([[0.5, 0.5, 0.5, 0.0], [-1.0, 0.0, 0.0, 0.0]]))


def test_aggregation_token_vs_sequence_by_hand():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)
    assert aggregate(x, mask, "token").item() == pytest.approx((4 + 5) / 5)   # every token counts once
    assert aggregate(x, mask, "sequence").item() == pytest.approx((1 + 5) / 2)  # every response counts once


def test_estimator_components():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.float32)
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])  # sequence rewards 1 and -1
    adv, returns = GRPO(group_size=2, scale_by_std=False).estimate(rewards, None, mask)
    assert returns is None
    torch.testing.assert_close(adv, torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]]))
    adv, _ = RLOO(group_size=2).estimate(rewards, None, mask)
    torch.testing.assert_close(adv, torch.tensor([[2.0, 2.0, 0.0], [-2.0, -2.0, -2.0]]))
    adv, returns = GAE(gamma=1.0, lam=1.0).estimate(rewards, torch.zeros(2, 3), mask)
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]]))
    assert GAE.needs_critic and not GRPO.needs_critic and not RLOO.needs_critic
    for bad in (lambda: GRPO(group_size=1), lambda: RLOO(group_size=1)):
        with pytest.raises(ValueError, match="group_size"):
            bad()
