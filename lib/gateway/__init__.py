"""The one way to call a model: providers, retries, the circuit breaker, fallback, streaming, the response
cache, budgets, PII redaction, prices, the call-log writer and the offline answerer.

Imports lib.core only.
"""
