"""The optimizer family, one module per optimizer."""
