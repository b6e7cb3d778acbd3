"""mailroom: a secure-by-default mail server that speaks Postfix's and Dovecot's language."""

__version__ = "0.1.0"
