"""PPO critics (components chosen in YAML as `model.init_args.critic`): a value head V(s_t) = w·h_t on hidden states.

* `SharedCritic` — the value head reads the policy's own hidden states: one adapter carries both losses.
* `AdapterCritic` — a second LoRA adapter "critic" on the same quantized base (initialised from the SFT adapter,
  like the paper's separate SFT-initialised critic), with its own value head.

A critic attaches itself to the policy model (returning the value head the system owns), computes values for a
rollout, and decides how the value loss flows back (`backward`): that is the one thing the two designs do
differently, so the PPO step never branches on it. What crosses that interface travels in two records:
`CriticInputs` (the value head, a forward under an adapter, the rows and the policy's hidden states) and
`ValueTargets` (the rollout's values, the returns and the response mask). `critic: null` (critic-free estimators)
builds nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tl_lightning.objectives.ppo import clipped_value_loss
from tl_lightning.systems.ppo_rollout import Rollout

CRITIC_ADAPTER = "critic"


class ValueHead(torch.nn.Module):
    """V(s_t) = w·h_t: a bias-free linear head on the last hidden state (as the paper code's critic), zero-initialised
    so the first values are 0."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1, bias=False)
        torch.nn.init.zeros_(self.linear.weight)

    def forward(self, hidden: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """(b, P + R, h) hidden states → (b, R) values of the states before each response token."""
        return self.linear(hidden[:, prompt_length - 1: -1].float()).squeeze(-1)


# hidden(rollout, adapter_name) -> (b, P + R, h) final hidden states of the rollout under that adapter
Forward = Callable[[Rollout, str | None], torch.Tensor]


@dataclass(frozen=True)
class CriticInputs:
    """What a critic reads to compute the values of some rollout rows (a no-grad chunk or a PPO minibatch)."""

    head: ValueHead | None
    """The system's value head (None without a critic)."""
    hidden: Forward
    """Final hidden states of rows under an adapter (the critic's own forward, for `AdapterCritic`)."""
    rollout: Rollout
    """The rows."""
    policy_hidden: torch.Tensor
    """(b, P + R, h) final hidden states of the policy's forward of the rows (what `SharedCritic` reads)."""


@dataclass(frozen=True)
class ValueTargets:
    """What the value loss of a PPO minibatch compares with: all (b, R); None without a critic."""

    old_values: torch.Tensor | None
    """The rollout's values (the clip is around them)."""
    returns: torch.Tensor | None
    mask: torch.Tensor
    """1.0 on response tokens."""


@dataclass(frozen=True)
class Critic(ABC):
    """How PPO's value function sits on the policy's base model. Settings only: the value head it creates in
    `attach` is owned (trained, checkpointed, exported) by the system.

    Args:
        value_clip: value-loss clip around the rollout's values (paper code: 0.2).
        vf_coef: value-loss weight.
    """

    value_clip: float = 0.2
    vf_coef: float = 1.0
    adapter: ClassVar[str | None] = None
    """The LoRA adapter this critic trains (None: it shares the policy's)."""

    def attach(self, model, sft_adapter: str | None, device: torch.device) -> ValueHead:
        """Add any adapter; return a value head (loaded from `sft_adapter`/value_head.safetensors when present)."""
        head = ValueHead(model.config.hidden_size).to(device)
        path = Path(sft_adapter or "") / "value_head.safetensors"
        if sft_adapter and path.is_file():
            from safetensors.torch import load_file

            head.load_state_dict(load_file(str(path)))
        return head

    def adapter_parameters(self, model) -> list[torch.nn.Parameter]:
        if self.adapter is None:
            return []
        return [p for n, p in model.named_parameters() if "lora_" in n and f".{self.adapter}." in n]

    def loss(self, inputs: CriticInputs, targets: ValueTargets) -> tuple[torch.Tensor, torch.Tensor]:
        """(clipped value loss, value clip fraction) of the rows' values."""
        return clipped_value_loss(self.values(inputs), targets.old_values, targets.returns, targets.mask,
                                  self.value_clip)

    @abstractmethod
    def values(self, inputs: CriticInputs) -> torch.Tensor | None:
        """(b, R) values of the rows (None without a critic)."""

    @abstractmethod
    def backward(self, inputs: CriticInputs, targets: ValueTargets, policy_loss: torch.Tensor,
                 backward: Callable[[torch.Tensor], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Back-propagate the policy loss and this critic's value loss with `backward`; returns (value loss, value
        clip fraction)."""


@dataclass(frozen=True)
class SharedCritic(Critic):
    """Value head on the policy's hidden states; policy and value losses flow through the policy adapter together.

    Args:
        value_clip: value-loss clip around the rollout's values (paper code: 0.2).
        vf_coef: weight of the value loss in the shared loss.
    """

    def values(self, inputs: CriticInputs) -> torch.Tensor:
        return inputs.head(inputs.policy_hidden, inputs.rollout.prompt_length)

    def backward(self, inputs, targets, policy_loss, backward):
        vf_loss, clipfrac = self.loss(inputs, targets)
        backward(policy_loss + self.vf_coef * vf_loss)
        return vf_loss, clipfrac


@dataclass(frozen=True)
class AdapterCritic(Critic):
    """A separate LoRA adapter ("critic") + value head on the same base, initialised from the SFT adapter.

    Args:
        value_clip: value-loss clip around the rollout's values (paper code: 0.2).
        vf_coef: value-loss weight (with separate parameters it only scales the critic's gradient).
    """

    adapter: ClassVar[str | None] = CRITIC_ADAPTER

    def attach(self, model, sft_adapter, device) -> ValueHead:
        if sft_adapter:
            model.load_adapter(sft_adapter, adapter_name=CRITIC_ADAPTER, is_trainable=True)
        else:
            model.add_adapter(CRITIC_ADAPTER, model.peft_config["default"])
        return super().attach(model, sft_adapter, device)

    def values(self, inputs: CriticInputs) -> torch.Tensor:
        return inputs.head(inputs.hidden(inputs.rollout, CRITIC_ADAPTER), inputs.rollout.prompt_length)

    def backward(self, inputs, targets, policy_loss, backward):
        backward(policy_loss)  # free the policy graph before the critic's own forward
        vf_loss, clipfrac = self.loss(inputs, targets)
        backward(self.vf_coef * vf_loss)
        return vf_loss, clipfrac


@dataclass(frozen=True)
class NoCritic(Critic):
    """No value function (`critic: null`, critic-free estimators): nothing is built, trained or saved."""

    def attach(self, model, sft_adapter, device) -> None:
        return None

    def values(self, inputs: CriticInputs) -> None:
        return None

    def backward(self, inputs, targets, policy_loss, backward):
        backward(policy_loss)
        zero = policy_loss.detach().new_zeros(())
        return zero, zero
