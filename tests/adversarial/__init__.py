"""Adversarial tests (issue 16): hostile rows, annotators, members and clients against the real components."""
