"""Layer 9: the command line (`main.py`), config-error messages, process-level helpers, the mask inspector and
the merge export (`python -m tl_lightning.cli.inspect`, `python -m tl_lightning.cli.export`)."""
