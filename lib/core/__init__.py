"""Core: settings, the database engine and migrations, the tables, identity and roles, span helpers (spans.py).

Imports nothing else from lib; every other package may import it.
"""
