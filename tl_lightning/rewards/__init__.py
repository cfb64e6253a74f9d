"""Error taxonomy (`classify`) and the IRM reward table."""
