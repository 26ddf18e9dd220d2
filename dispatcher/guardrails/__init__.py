"""Guardrails: what keeps a campaign from burning its sender (a canary first, automatic
pauses on bad signals, frequency caps across campaigns)."""
