"""Retrieval: embeddings, loaders, chunking, the vector store and hybrid search."""
