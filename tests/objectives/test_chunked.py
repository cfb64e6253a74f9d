"""The chunked output head equals the full-logits computation: log-probs, entropy, argmax and gradients."""

import pytest
import torch
import torch.nn.functional as F

from tl_lightning.objectives.chunked import head_stats


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 100])
def test_head_stats_equal_full_logits_values_and_gradients(chunk, recompute):
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(10, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (10,), generator=g)
    logits = head(hidden)
    logp_full = F.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    ent_full = -(F.softmax(logits, -1) * F.log_softmax(logits, -1)).sum(-1)
    grads_full = torch.autograd.grad(logp_full.sum(), [hidden, head.weight])
    stats = head_stats(hidden, head, targets, chunk, with_entropy=True, recompute=recompute)
    torch.testing.assert_close(stats.logp, logp_full)
    torch.testing.assert_close(stats.entropy, ent_full.detach())
    assert torch.equal(stats.correct, logits.argmax(-1) == targets)
    grads = torch.autograd.grad(stats.logp.sum(), [hidden, head.weight])  # through the checkpoints, if any
    for a, b in zip(grads, grads_full):
        torch.testing.assert_close(a, b)


def test_empty_input():
    stats = head_stats(torch.zeros(0, 4), torch.nn.Linear(4, 5), torch.zeros(0, dtype=torch.long), 2)
    assert stats.logp.shape == (0,) and stats.correct.shape == (0,)


@pytest.mark.parametrize("chunk, recompute, head_calls", [(None, False, 1), (None, True, 2), (4, True, 2 * 3),
                                                          (4, False, 3)])
def test_recompute_applies_the_head_again_in_backward_only_when_asked(chunk, recompute, head_calls):
    # 10 positions: one call, or 3 chunks of at most 4; a checkpointed chunk runs its head once more in backward
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(8, 11, bias=False)
    calls = []

    def head(h):
        calls.append(h.size(0))
        return linear(h)

    hidden = torch.randn(10, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (10,), generator=g)
    stats = head_stats(hidden, head, targets, chunk, recompute=recompute)
    stats.logp.sum().backward()
    assert len(calls) == head_calls
    reference = head_stats(hidden.detach(), linear, targets, None)  # no autograd: values only
    torch.testing.assert_close(stats.logp.detach(), reference.logp)


def test_no_positions_keep_the_graph_connected():
    hidden = torch.zeros(3, 4, requires_grad=True)
    stats = head_stats(hidden[:0], torch.nn.Linear(4, 5), torch.zeros(0, dtype=torch.long), None)
    stats.logp.sum().backward()  # a micro-batch without trained tokens: zero gradients, no error
    assert torch.equal(hidden.grad, torch.zeros(3, 4))
