"""pytest-natsnet."""
