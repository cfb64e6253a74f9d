"""Step prompts: one per correct call; erroneous calls are never gold but stay in the history."""

from tl_lightning.data.steps import step_prompts
from tl_lightning.data.toolworld import ToolWorld


def test_step_prompts_skip_erroneous_calls_but_keep_them_in_history():
    conv = next(c for c in ToolWorld(seed=2).split("val", 100) if c.meta["errors"])
    bad = {e["message_index"] for e in conv.meta["errors"]}
    steps = list(step_prompts(conv))
    n_calls = sum(1 for m in conv.messages if m.role == "assistant")
    assert len(steps) == n_calls - len(bad)
    for s in steps:
        i = s.meta["step"]
        assert i not in bad and s.messages == conv.messages[:i] and s.gold == ((conv.messages[i].calls),)
    later = [s for s in steps if s.meta["step"] > min(bad)]
    assert later and all(any(m.calls == conv.messages[min(bad)].calls for m in s.messages) for s in later)
    assert len(list(step_prompts(conv, first_only=True))) == 1
