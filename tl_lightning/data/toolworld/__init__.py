"""ToolWorld: a seeded procedural tool-use world (the quickstart's built-in data and the MAE/PKT/IRM testbed)."""

from tl_lightning.data.toolworld.generate import ERROR_KINDS, ToolWorld, execute

__all__ = ["ERROR_KINDS", "ToolWorld", "execute"]
