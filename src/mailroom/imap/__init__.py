"""IMAP4rev1 (RFC 3501) as a sans-IO core: grammar, state machine, SEARCH, FETCH."""
