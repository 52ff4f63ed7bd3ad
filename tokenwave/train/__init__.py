"""Training recipes (codec, ...) sharing one trainer loop."""
