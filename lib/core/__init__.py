"""Core: settings, the database engine and migrations, the tables, identity and roles.

Imports nothing else from lib; every other package may import it.
"""
