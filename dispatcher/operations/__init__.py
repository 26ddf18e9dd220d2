"""Pause/resume/cancel, progress (read only), report files, metrics."""
