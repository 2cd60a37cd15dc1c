"""The network: the U-Net, its output blend, INDI sampling, weights on disk."""
