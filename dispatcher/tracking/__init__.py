"""Provider -> statuses: webhook bodies, group commit, applying reports, incoming messages."""
