"""People -> batches: sender checks, media uploads, batching and bulk inserts."""
