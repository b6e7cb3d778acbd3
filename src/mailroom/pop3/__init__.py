"""POP3 (RFC 1939, 2449, 2595, 5034): a sans-IO server core; the socket side is adapters/pop3.py."""
