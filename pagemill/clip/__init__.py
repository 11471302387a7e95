"""CLIP ViT-B/32 embeddings for extracted images: preprocessing, tokenizer, the ONNX model and the
embed stage. Submodules are imported directly (``pagemill.clip.embed``…) so that a caller that only
reads embeddings back (the Write stage) does not pull in Pillow, tokenizers or ONNX Runtime."""
