"""Chat: a turn from question to stored answer (plain or grounded in a collection), saved conversations and
feedback.

Imports lib.core, lib.gateway, lib.documents and lib.prompts.
"""
