"""Pixels and files: the pixel contract, chroma, image files, every output written, folder policy."""
