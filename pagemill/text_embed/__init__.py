"""Text embeddings of chunks and queries: one ``TextEmbedder`` per configured model.

Every vector is stored with the name of the model that made it, and a query is embedded by the
same model; changing the model is a settings change plus ``pagemill reembed``, never a table of
mixed vectors (pagemill.db.chunk_vectors)."""
