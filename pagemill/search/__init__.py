"""Finding what pagemill stored: hybrid search over chunks and images (pagemill.search.hybrid),
nearest images by CLIP vector (pagemill.search.images), and the rank fusion they share."""
