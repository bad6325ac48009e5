"""ganspace package."""
