"""Decisions and work: receive a frame into an outcome, group commit, workers, outbound
delivery, application ACKs, the Twisted MLLP protocol that speaks the wire.
"""
