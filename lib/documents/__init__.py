"""Documents: parsing, splitting, indexing and its jobs, embeddings, the vector store, BM25, retrieval and
citations.

Imports lib.core and lib.gateway.
"""
