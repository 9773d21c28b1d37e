"""The workbench's logic; pages call into this package and nothing here imports Streamlit
except `lib.ui.resources`."""
