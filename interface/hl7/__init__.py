"""The wire and the message, pure: MLLP framing, decoding and escapes, the cheap header, ACKs,
table-0357 errors, MRN rules, formatted text. No I/O, no database, no reactor.
"""
