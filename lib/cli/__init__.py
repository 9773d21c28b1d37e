"""Command line: `python -m lib.cli <command> ...`.

May import every other package except lib.ui.
"""
