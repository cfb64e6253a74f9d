"""Online multi-turn episodes on the rollout engine.

Every turn, the engine continues each running episode from its token ids (prompt, then everything since): the
policy's reply is parsed (`format.call_format`, `ast` only), its calls run in the episode's own environment, and
the tool messages are appended **as token ids** (`data.tokenization.turn_continuation_ids`): no earlier turn is
ever re-tokenized, so the update sees exactly the tokens that were sampled. A reply that is not a call gets an
error observation and the episode goes on. An episode ends when the environment says done, at `max_turns`, when a
reply runs out of tokens without a stop token, or when a tool output would overflow `max_episode_tokens` (that
output is rolled back: the episode ends after the reply that caused it). `episode_rollout` turns episodes into a
`Rollout` whose `action_mask` marks the sampled tokens: tool outputs are context, not actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from tl_lightning.data.tokenization import prompt_token_ids, turn_continuation_ids
from tl_lightning.envs.environment import Environment, Task
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.render import PaperFormat, end_of_turn_token
from tl_lightning.format.schema import Message
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.rewards.reward import score_response
from tl_lightning.rewards.taxonomy import Classification
from tl_lightning.systems.ppo_rollout import Rollout, build_rollout

NOT_A_CALL = "Error: the reply is not a tool call ({reason}). Reply with a call such as name(argument='value')."
ENDINGS = ("done", "turn_cap", "no_stop", "budget")


@dataclass
class EpisodeSettings:
    """Limits of an online episode."""

    max_turns: int = 4
    """Assistant turns at most; an episode still running then ends (`turn_cap`)."""
    max_episode_tokens: int = 768
    """Tokens after the prompt at most (sampled replies and tool outputs): a tool output that would pass it is
    rolled back and the episode ends (`budget`)."""

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_episode_tokens < 1:
            raise ValueError("episode.max_turns and episode.max_episode_tokens must be >= 1")


@dataclass
class Episode:
    """One episode: its environment, its token stream after the prompt, and what happened."""

    task: Task
    env: Environment
    prompt: list[int]
    messages: list[Message]
    tokens: list[int] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)
    logq: list[float] = field(default_factory=list)
    turns: int = 0
    unparsed: int = 0  # replies that were not calls
    ended: str = ""  # one of ENDINGS once it ended
    classified: list[Classification] = field(default_factory=list)  # per turn with known expected calls

    @property
    def called_tool(self) -> bool:
        """Whether a call ran besides the one that ended the episode (`finish`)."""
        return self.env.calls_made > (self.ended == "done")

    def append(self, ids: list[int], sampled: bool, logq: list[float] | None = None) -> None:
        self.tokens += ids
        self.sampled += [sampled] * len(ids)
        self.logq += logq if logq is not None else [0.0] * len(ids)


def turn_stop_text(renderer, tokenizer) -> str:
    """The text of the token that ends an assistant turn in the renderer's format."""
    if isinstance(renderer, PaperFormat):
        return renderer.eos_token
    return tokenizer.decode([end_of_turn_token(tokenizer)])


def run_episodes(runner, renderer, tasks: list[Task], env: Environment, settings: EpisodeSettings, seed: int,
                 generation: GenerationSettings | None = None) -> list[Episode]:
    """Run one episode per task (repeat a task for a group), every episode on a fresh copy of `env`. `runner` is
    the system's `PolicyRunner` (model, tokenizer, engine, stop ids); `generation` the decoding settings (default
    the runner's); turn k samples with seed + k."""
    tok, gen = runner.tokenizer, generation or runner.generation
    episodes = []
    for task in tasks:
        e = env.spawn()
        opening = tuple(e.reset(task))
        prompt = prompt_token_ids([task.conversation(opening)], renderer, tok)[0]
        episodes.append(Episode(task, e, prompt, list(opening)))
    stop_text = turn_stop_text(renderer, tok)
    runner.model.eval()
    runner.model.set_adapter("default")
    runner.engine.policy_changed()  # one copy of the policy per iteration, however many turns
    for turn in range(settings.max_turns):
        running = [e for e in episodes if not e.ended]
        if not running:
            break
        room = settings.max_episode_tokens - max(len(e.tokens) for e in running)
        turn_gen = replace(gen, max_new_tokens=max(1, min(gen.max_new_tokens, room)),
                           max_prompt_length=max(len(e.prompt) for e in running) + settings.max_episode_tokens)
        device = next(runner.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + turn)
            out = runner.engine.generate(runner.model, [e.prompt + e.tokens for e in running], tok.pad_token_id,
                                         runner.stop_ids, turn_gen)
        for k, e in enumerate(running):
            _take_turn(e, out.responses[k], out.logprobs[k] if out.logprobs else None, runner, renderer,
                       stop_text, settings, last_turn=turn + 1 == settings.max_turns)
    return episodes


def _take_turn(e: Episode, reply: list[int], logq: list[float] | None, runner, renderer, stop_text: str,
               settings: EpisodeSettings, last_turn: bool) -> None:
    tok = runner.tokenizer
    e.append(reply, sampled=True, logq=logq)
    e.turns += 1
    text = tok.decode(reply, skip_special_tokens=True)
    expected = e.env.expected_calls()
    if expected is not None:  # every reply is scored, a cut one too (the per-call IRM reward)
        e.classified.append(score_response(text, e.task.conversation(tuple(e.messages), expected))[1])
    if not reply or reply[-1] not in runner.stop_ids or len(e.tokens) > settings.max_episode_tokens:
        e.ended = "no_stop"
        return
    parsed = parse_calls(text)
    if parsed.ok and parsed.calls:
        observations, done = e.env.step(parsed.calls)
        e.messages += [Message("assistant", calls=parsed.calls), *observations]
    else:
        e.unparsed += 1
        reason = parsed.failure.reason if parsed.failure else "no call"
        observations, done = [Message("tool", NOT_A_CALL.format(reason=reason[:80]))], False
        e.messages += [Message("assistant", text), *observations]
    if done or last_turn:
        e.ended = "done" if done else "turn_cap"
        return
    following = turn_continuation_ids(renderer, tok, e.task.conversation(tuple(e.messages)), stop_text)
    if len(e.tokens) + len(following) + 1 > settings.max_episode_tokens:
        e.ended = "budget"  # the output is rolled back: never appended, the episode ends on the policy's reply
        return
    e.append(following, sampled=False)


def episode_rollout(episodes: list[Episode], pad_id: int, stop_ids: tuple[int, ...], texts: list[str],
                    with_logq: bool) -> Rollout:
    """The episodes as one `Rollout`: prompt, then every token after it; `action_mask` 1 on sampled tokens only,
    `stopped` where the environment ended the episode."""
    rollout = build_rollout([e.prompt for e in episodes], [e.tokens for e in episodes], pad_id, stop_ids, texts,
                            None, [e.logq for e in episodes] if with_logq else None)
    action = torch.zeros_like(rollout.response_mask)
    for i, e in enumerate(episodes):
        action[i, :len(e.sampled)] = torch.tensor(e.sampled, dtype=action.dtype)
    stopped = torch.tensor([e.ended == "done" for e in episodes])
    return replace(rollout, action_mask=action, stopped=stopped)
