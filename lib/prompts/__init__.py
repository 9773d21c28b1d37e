"""Prompt templates: the `{{ variable }}` language, the versioned store with labels, diff, export/import, the
built-in prompts, running a template through the gateway, and which version a live A/B experiment serves.

Imports lib.core and lib.gateway; never lib.chat or lib.documents.
"""
