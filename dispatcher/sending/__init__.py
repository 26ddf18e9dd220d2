"""Batches -> provider: claim, last look, fan-out, the shared limiter, sending windows."""
