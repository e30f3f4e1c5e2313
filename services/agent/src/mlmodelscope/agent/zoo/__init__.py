"""The model zoo: well-known architectures with seeded random weights, built on demand for performance work."""
