"""Compare: test sets, A/B batch runs, the judge, statistics, live A/B experiments and their reports.

Imports lib.core, lib.gateway, lib.documents and lib.prompts.
"""
