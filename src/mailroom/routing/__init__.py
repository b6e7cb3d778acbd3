"""Where a recipient's mail goes next: lookup tables, transport_maps, relayhost, MX."""
