"""Environments for online multi-turn RL: the protocol (`environment.py`), ToolWorld (`toolworld.py`), plain Python
functions as tools (`python_tools.py`) and the datamodule that serves their tasks (`datamodule.py`)."""
