"""Online episodes: the tokens a policy sampled are kept as sampled, tool outputs are appended as token ids and
masked out of the loss, and every way an episode ends is counted (scripted replies on the tiny tokenizer)."""

from types import SimpleNamespace

import torch

from tl_lightning.data.tokenization import turn_continuation_ids
from tl_lightning.envs.toolworld import ToolWorldEnv
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.format.render import make_renderer
from tl_lightning.format.schema import ToolCall
from tl_lightning.models.engine import RolloutEngine
from tl_lightning.models.generation import Generated, GenerationSettings
from tl_lightning.objectives.advantages import gae, token_rewards
from tl_lightning.systems.episodes import NOT_A_CALL, EpisodeSettings, episode_rollout, run_episodes

ENV = ToolWorldEnv(seed=0)
TASK = next(t for t in ENV.tasks("train", 40) if len(t.goal.steps) == 1)


class ScriptedEngine(RolloutEngine):
    """Replies from a script: turn k gives every running episode `turns[k]`; records the prompts it was given."""

    def __init__(self, turns: list[list[int]]) -> None:
        self.turns, self.prompts = turns, []

    def generate(self, model, prompts, pad_id, stop_ids, settings):
        self.prompts.append(prompts)
        reply = self.turns[len(self.prompts) - 1][:settings.max_new_tokens]
        return Generated([list(reply) for _ in prompts], [[-0.5] * len(reply) for _ in prompts])


class StubModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def set_adapter(self, name: str) -> None:
        pass


def _runner(tokenizer, turns):
    gen = GenerationSettings(max_new_tokens=64, do_sample=True)
    return SimpleNamespace(model=StubModel(), tokenizer=tokenizer, engine=ScriptedEngine(turns), generation=gen,
                           stop_ids=(tokenizer.eos_token_id,))


def _reply(tokenizer, call: ToolCall, split: bool = False) -> list[int]:
    ids = tokenizer(" " + join_rendered(render_calls((call,))), add_special_tokens=False).input_ids
    if split:  # one token spelled out in pieces: the same text in tokens the tokenizer would not produce
        vocab = tokenizer.get_vocab()
        k, piece = next((k, p) for k, p in enumerate(tokenizer.convert_ids_to_tokens(ids))
                        if len(p) > 1 and "▁" not in p and all(c in vocab for c in p))
        ids = ids[:k] + [vocab[c] for c in piece] + ids[k + 1:]
    return ids + [tokenizer.eos_token_id]


def test_an_episode_appends_tool_outputs_as_ids_and_masks_them(tokenizer):
    renderer = make_renderer("paper", tokenizer)
    first = _reply(tokenizer, TASK.goal.steps[0], split=True)
    assert first != _reply(tokenizer, TASK.goal.steps[0])  # really not the canonical tokens
    finish = _reply(tokenizer, ToolCall("finish", {"answer": "done"}))
    runner = _runner(tokenizer, [first, finish])
    (e,) = run_episodes(runner, renderer, [TASK], ENV, EpisodeSettings(max_turns=4, max_episode_tokens=400), seed=0)
    assert e.ended == "done" and e.turns == 2 and e.env.reward() == 1.0
    after_first = e.task.conversation(tuple(e.messages[:3]))  # user, the call, its output
    following = turn_continuation_ids(renderer, tokenizer, after_first, tokenizer.eos_token)
    assert e.tokens == first + following + finish  # sampled ids kept verbatim, the output appended as ids
    assert runner.engine.prompts[1] == [e.prompt + first + following]  # turn 2 continued from those very ids
    rollout = episode_rollout([e], tokenizer.pad_token_id, runner.stop_ids, ["text"], with_logq=True)
    n1, n2 = len(first), len(following)
    assert rollout.action_mask[0].tolist() == [1] * n1 + [0] * n2 + [1] * len(finish)
    assert rollout.response_mask[0].sum() == len(e.tokens) and bool(rollout.stopped[0])
    assert rollout.sample_logp[0, n1:n1 + n2].abs().sum() == 0  # no log q on tokens nobody sampled
    # credit: with gamma = lam = 1 and zero values, the first turn's tokens get the final reward
    mask = rollout.loss_mask.float()
    adv, _ = gae(token_rewards(torch.tensor([1.0]), mask), torch.zeros_like(mask), mask, gamma=1.0, lam=1.0)
    assert adv[0, :n1].tolist() == [1.0] * n1 and adv[0, n1:n1 + n2].abs().sum() == 0


def test_a_reply_that_is_not_a_call_gets_an_error_observation(tokenizer):
    garbage = tokenizer(" I would rather chat.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    runner = _runner(tokenizer, [garbage, garbage])
    (e,) = run_episodes(runner, make_renderer("paper", tokenizer), [TASK], ENV, EpisodeSettings(max_turns=2), 0)
    assert e.ended == "turn_cap" and e.unparsed == 2 and e.turns == 2
    assert e.messages[2].role == "tool" and e.messages[2].content.startswith(NOT_A_CALL.split("(")[0])
    assert e.env.reward() == 0.0 and not e.called_tool


def test_a_tool_output_that_would_overflow_the_budget_is_rolled_back(tokenizer):
    first = _reply(tokenizer, TASK.goal.steps[0])
    runner = _runner(tokenizer, [first])
    settings = EpisodeSettings(max_turns=4, max_episode_tokens=len(first) + 5)
    (e,) = run_episodes(runner, make_renderer("paper", tokenizer), [TASK], ENV, settings, 0)
    assert e.ended == "budget" and e.tokens == first and all(e.sampled)


def test_a_reply_without_a_stop_token_ends_the_episode(tokenizer):
    runner = _runner(tokenizer, [_reply(tokenizer, TASK.goal.steps[0])[:-1]])
    (e,) = run_episodes(runner, make_renderer("paper", tokenizer), [TASK, TASK], ENV, EpisodeSettings(), 0)[:1]
    assert e.ended == "no_stop" and e.env.calls_made == 0 and len(runner.engine.prompts) == 1
