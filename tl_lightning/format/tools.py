"""Facts about tools that several layers need (data noise, the taxonomy, metrics, evaluation)."""

from __future__ import annotations

FREE_TEXT_TOOLS = frozenset({"finish", "ask_to_user", "getDetails"})
"""Tools whose argument is free text and is not content-scored: RoTBench's finish / ask_to_user, and ToolAlpaca's
ask-the-user tool getDetails. Configurable wherever calls are scored."""


def free_text_tools_of(conversation, default: frozenset[str] = FREE_TEXT_TOOLS) -> frozenset[str]:
    """The free-text tools of one conversation: noisy data (data/noise.py) renames the finish / ask-the-user roles
    per conversation and records the new names in `Conversation.free_text_tools`."""
    names = conversation.free_text_tools
    return frozenset(names) if names is not None else default
