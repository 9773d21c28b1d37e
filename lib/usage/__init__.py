"""Usage: dashboard queries computed in SQL over the call log and its hourly and daily rollups, who may read a call's text
(access), forecast, charts and synthetic demo data.

Imports lib.core, lib.gateway and lib.prompts (the built-in template names for demo data).
"""
