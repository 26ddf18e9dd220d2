"""The retry table and the resend planner."""
