"""The messaging providers, each in a folder of its own."""
