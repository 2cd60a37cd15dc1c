"""Restoration: `Debander`, the detail guard, letterbox bars, the image job, ONNX export."""
