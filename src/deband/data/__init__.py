"""Training data: the real-image corpus, training packs, paired patches."""
