"""Slow, obviously-correct reference implementations the native kernels are tested against."""
