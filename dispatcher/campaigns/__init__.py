"""What a campaign is and how it enters: spec, message building, local checks,
registration, schedules, drop folder.
"""
