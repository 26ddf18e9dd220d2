"""CSV -> people: reading, phone numbers, the identity graph and book, opt-outs, the two passes."""
