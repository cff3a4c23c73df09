"""Detectors: one module each, pure numpy, behind a registry."""
