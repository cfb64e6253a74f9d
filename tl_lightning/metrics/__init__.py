"""torchmetrics for tool calls (TS / PI / CF, error-category rates, exact match, argument F1)."""
