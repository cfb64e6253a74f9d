"""Scoring: the error taxonomy (`classify`), `score_response` and the IRM reward (`tool_call_rewards`)."""
