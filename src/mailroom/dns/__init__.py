"""DNS look-ups behind one small interface, so policy code and tests never touch the network."""
