"""The CLI, its console, the webhook app and the embedded stack: nothing in the
pipeline imports them.
"""
