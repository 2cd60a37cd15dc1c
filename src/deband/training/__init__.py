"""Training: the losses and the loop."""
