"""tl-lightning: TL-Training (MAE + PKT + IRM) for tool-calling LLMs on one GPU, with PyTorch Lightning.

The package root imports nothing heavy, so `python -m tl_lightning.…` commands and config parsing stay fast.
Configs name classes by their full import path (LightningCLI's import paths are the registry).
"""

__version__ = "0.1.0"
