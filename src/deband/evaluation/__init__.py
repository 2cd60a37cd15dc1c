"""Evaluation: the benchmark sets, FFmpeg baselines, scores, tables and reports (`deband eval`)."""
