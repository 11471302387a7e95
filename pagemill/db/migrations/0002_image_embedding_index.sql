-- Nearest-neighbour search over image embeddings (pagemill search): cosine distance, as CLIP
-- vectors are compared. HNSW answers well without training data, unlike IVFFlat, which needs rows
-- present when it is built. Inserting into an HNSW-indexed table is slower than into a bare one;
-- the scale issue measures that and may move the build after bulk loads.
create index images_embedding_hnsw on images using hnsw (embedding vector_cosine_ops);
