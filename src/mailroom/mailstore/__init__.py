"""mailstore."""
