"""Measurements of hvq (rate, distortion, speed); the product never imports this package."""
