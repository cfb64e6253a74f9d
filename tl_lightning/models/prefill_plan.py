"""Which prompt tokens a rollout engine prefills, and in which batches: the plan behind `DecodeLoop`'s prefill.

Prefill is most of a CPU rollout or evaluation (RoTBench prompts: 194-4,038 tokens, up to 64 new), so the plan
avoids computing any prompt token twice where it can:
* identical prompts (a GRPO group's G samples) are prefilled once (`distinct`);
* prompts that share a prefix (RoTBench items written against the same tool list) form a `PrefixGroup` whose
  shared prefix is prefilled once, then each member's own tail (`prefix_groups`);
* groups are prefilled in buckets, shortest first, so that a short prompt never waits in a batch padded to a long
  one (`buckets`, with the padded cost of `prefill_cost`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrefixGroup:
    """Prompts whose first `shared` tokens are the same; every member has at least one token after them (the
    logits of the next token come from a member's last token). A group of one shares nothing with the others:
    its `shared` is all but its last token."""

    shared: int
    members: tuple[int, ...]


def distinct(prompts: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """(the distinct prompts in first-seen order, per distinct prompt the batch rows that hold it)."""
    index: dict[tuple[int, ...], int] = {}
    copies: list[list[int]] = []
    for i, p in enumerate(prompts):
        d = index.setdefault(tuple(p), len(index))
        if d == len(copies):
            copies.append([])
        copies[d].append(i)
    return [list(k) for k in index], copies


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(prompts: list[list[int]], min_shared: int) -> list[PrefixGroup]:
    """Distinct `prompts` grouped by shared prefixes of at least `min_shared` tokens. In token order, a prompt
    joins the group before it when that saves prefill: it skips the prefix it shares with the group's last member,
    and each of the group's k members loses what the group's shared prefix shrinks by (join iff the gain is
    larger). Groups come in token order; members keep their index into `prompts`."""
    groups: list[tuple[int | None, list[int]]] = []  # (shared prefix, None for a group of one; members)
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        if groups:
            shared, members = groups[-1]
            overlap = common_prefix(prompts[members[-1]], prompts[i])
            joined = overlap if shared is None else min(shared, overlap)
            loss = 0 if shared is None else len(members) * (shared - joined)
            if joined >= min_shared and loss < joined:
                groups[-1] = (joined, members + [i])
                continue
        groups.append((None, [i]))
    out = []
    for shared, members in groups:
        longest_shared = min(len(prompts[m]) for m in members) - 1
        out.append(PrefixGroup(longest_shared if shared is None else min(shared, longest_shared), tuple(members)))
    return out


def prefill_cost(groups: list[PrefixGroup], lengths: list[int]) -> int:
    """Padded tokens to prefill `groups` as one bucket: their shared prefixes left-padded to the longest, then
    every member's tail left-padded to the longest tail; one stage of whole prompts when nothing is shared."""
    if all(len(g.members) == 1 for g in groups):
        return len(groups) * max(lengths[g.members[0]] for g in groups)
    tails = [lengths[m] - g.shared for g in groups for m in g.members]
    return len(groups) * max(g.shared for g in groups) + len(tails) * max(tails)


def buckets(groups: list[PrefixGroup], lengths: list[int], max_tokens: int | None) -> list[list[PrefixGroup]]:
    """`groups`, longest member shortest first, cut into buckets whose `prefill_cost` stays within `max_tokens`
    (a bucket holds at least one group; None: one bucket)."""
    order = sorted(groups, key=lambda g: max(lengths[m] for m in g.members))
    if max_tokens is None:
        return [order]
    out: list[list[PrefixGroup]] = []
    for g in order:
        if out and prefill_cost(out[-1] + [g], lengths) <= max_tokens:
            out[-1].append(g)
        else:
            out.append([g])
    return out
