"""UI: the only package that imports Streamlit. Cached resources (engine, gateway, stores) and view models
that turn lib results into what a page shows.

May import every other package except lib.cli.
"""
