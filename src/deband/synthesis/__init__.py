"""Banding synthesis: clean scenes, banding, delivery as video makes it, codecs, faint detail."""
