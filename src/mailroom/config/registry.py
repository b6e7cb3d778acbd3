"""THE parameter registry: every main.cf parameter mailroom knows, declared once.

`postconf -d`, `postconf` validation, `mailroom check` and docs/parameters.md all come
from these declarations. Where Postfix (or Dovecot) has the parameter, the name,
meaning and default are Postfix's; where mailroom is deliberately stricter the doc
says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroom.config import types as t


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: t.Kind
    default: str
    doc: str
    group: str
    origin: str = "postfix"  # postfix | dovecot | mailroom
    restart: bool = False  # True: a change needs a restart, not just SIGHUP


_PARAMS: list[Parameter] = []


def _p(
    name: str,
    kind: t.Kind,
    default: str,
    doc: str,
    group: str,
    origin: str = "postfix",
    restart: bool = False,
) -> None:
    _PARAMS.append(Parameter(name, kind, default, doc, group, origin, restart))


STR = t.String()
BOOL = t.Bool()
INT = t.Int()
SIZE = t.Size()
SECONDS = t.Time("s")
DAYS = t.Time("d")
HOURS = t.Time("h")
PATH = t.Path()
LIST = t.StrList()
RESTRICTIONS = t.RestrictionList()
LISTEN = t.ListenList()
TABLES = t.LookupTable()

# -- identity ---------------------------------------------------------------------------
G = "identity"
_p("config_directory", PATH, "/etc/mailroom", "Directory holding main.cf; set by -c, read-only.", G, restart=True)
_p("myhostname", STR, "localhost.localdomain", "Fully-qualified name of this mail host, used in the greeting, EHLO and Received headers; `init` sets it to the host's name.", G)
_p("mydomain", STR, "localdomain", "Domain of this host; by default $myhostname minus its first component (else localdomain), as in Postfix. A bare <postmaster> recipient means postmaster@$mydomain.", G)
_p("myorigin", STR, "$myhostname", "Domain appended to bare local names in mail from this host. Accepted for Postfix compatibility: mailroom has no local submission, so nothing uses it yet.", G)
_p("mail_name", STR, "mailroom", "Name of the mail system, shown in the greeting and Received headers.", G)
_p("smtpd_banner", STR, "$myhostname ESMTP $mail_name", "Text that follows the 220 code in the SMTP greeting.", G)

# -- trust ------------------------------------------------------------------------------
G = "trust"
_p("mynetworks", t.CidrList(), "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128", "Trusted client networks (permit_mynetworks); empty trusts nobody. Default: loopback only, like mynetworks_style = host without the host's own addresses.", G)

# -- TLS --------------------------------------------------------------------------------
G = "tls"
_p("smtpd_tls_security_level", t.Choice(("", "none", "may", "encrypt")), "", "SMTP server TLS: empty or none = off, may = offer STARTTLS, encrypt = require it.", G)
_p("smtpd_tls_auth_only", BOOL, "no", "Offer and accept AUTH only inside TLS.", G)
_p("smtpd_tls_cert_file", PATH, "", "PEM certificate chain for the SMTP, IMAP and POP3 servers; reloaded on SIGHUP.", G)
_p("smtpd_tls_key_file", PATH, "$smtpd_tls_cert_file", "PEM private key for smtpd_tls_cert_file.", G)
_p("smtpd_tls_protocols", STR, ">=TLSv1.2", "TLS versions the servers accept. Stricter than Postfix: TLS 1.2 or newer only.", G)
_p("smtp_tls_security_level", t.Choice(("", "none", "may", "encrypt")), "may", "SMTP client TLS for outbound delivery: none, may (opportunistic) or encrypt.", G)
_p("smtpd_tls_received_header", BOOL, "yes", "Record the TLS protocol and cipher in the Received header. (Postfix's default is no.)", G)

# -- SASL -------------------------------------------------------------------------------
G = "sasl"
_p("smtpd_sasl_auth_enable", BOOL, "no", "Offer SMTP AUTH (PLAIN, LOGIN).", G)
_p("smtpd_sasl_type", t.Choice(("mailroom", "dovecot")), "mailroom", "Who checks passwords: mailroom's own directory, or a Dovecot auth socket at smtpd_sasl_path. (Postfix's default is cyrus.)", G)
_p("smtpd_sasl_path", PATH, "private/auth", "Path of the Dovecot auth socket when smtpd_sasl_type = dovecot; relative to queue_directory as in Postfix.", G)
_p("login_sasl_type", t.Choice(("mailroom", "dovecot")), "$smtpd_sasl_type", "Who checks IMAP and POP3 passwords: mailroom's directory, or the Dovecot auth socket at login_sasl_path.", G, origin="mailroom")
_p("login_sasl_path", PATH, "$smtpd_sasl_path", "Dovecot auth socket for IMAP and POP3 logins when login_sasl_type = dovecot; relative to queue_directory.", G, origin="mailroom")
_p("smtpd_sasl_authenticated_header", BOOL, "yes", "Show the SASL user name in the Received header, as '(Authenticated sender: ...)'. (Postfix's default is no.)", G)
_p("disable_plaintext_auth", BOOL, "yes", "IMAP and POP3: refuse LOGIN/USER/AUTH until TLS is active (Dovecot's setting; mailroom does not exempt loopback).", G, origin="dovecot")

# -- restrictions -----------------------------------------------------------------------
G = "restrictions"
_p("smtpd_client_restrictions", RESTRICTIONS, "", "Restrictions applied to the client's address and name.", G)
_p("smtpd_helo_restrictions", RESTRICTIONS, "", "Restrictions applied to the HELO/EHLO name.", G)
_p("smtpd_sender_restrictions", RESTRICTIONS, "", "Restrictions applied to the MAIL FROM address.", G)
_p("smtpd_relay_restrictions", RESTRICTIONS, "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination", "Relay control, applied at RCPT before smtpd_recipient_restrictions.", G)
_p("smtpd_recipient_restrictions", RESTRICTIONS, "", "Restrictions applied to each RCPT TO address.", G)
_p("smtpd_etrn_restrictions", RESTRICTIONS, "", "Restrictions applied to the ETRN domain argument.", G)
_p("fast_flush_domains", LIST, "", "Domains for which ETRN starts a delivery attempt (a leading dot matches subdomains); others get 459 service unavailable. Postfix's default is $relay_domains, which an ISPmail setup leaves empty.", G)
_p("smtpd_delay_reject", BOOL, "yes", "Evaluate client, HELO and sender restrictions at RCPT time.", G)
_p("smtpd_helo_required", BOOL, "no", "Require HELO or EHLO before MAIL.", G)
_p("smtpd_reject_unlisted_recipient", BOOL, "yes", "Reject RCPT for unknown users in local virtual domains.", G)
_p("smtpd_reject_unlisted_sender", BOOL, "no", "Reject MAIL FROM addresses in local virtual domains that have no user or alias.", G)
_p("disable_vrfy_command", BOOL, "no", "Turn VRFY off (502). Even when on, mailroom never tells an unauthenticated client whether a mailbox exists.", G)

# -- limits -----------------------------------------------------------------------------
G = "limits"
_p("message_size_limit", SIZE, "10240000", "Largest message accepted, in bytes (SIZE and actual).", G)
_p("smtpd_recipient_limit", INT, "1000", "Most recipients accepted per message.", G)
_p("smtpd_timeout", SECONDS, "300s", "Time to wait for the next command or data before 421.", G)
_p("smtpd_hard_error_limit", INT, "20", "Errors after which the session is ended.", G)
_p("smtpd_soft_error_limit", INT, "10", "Errors after which each reply is delayed by smtpd_error_sleep_time.", G)
_p("smtpd_junk_command_limit", INT, "100", "Junk commands a client may send (NOOP, RSET, VRFY, ETRN, and, as in Postfix's code, HELO and EHLO; counted until a message is delivered) before each further one counts as an error towards smtpd_soft_error_limit and smtpd_hard_error_limit.", G)
_p("smtpd_error_sleep_time", SECONDS, "1s", "Delay after an error once the soft limit is reached, and after each failed AUTH.", G)
_p("smtpd_client_connection_count_limit", INT, "50", "Most simultaneous connections from one client address (0 = no limit).", G)
_p("smtpd_client_connection_rate_limit", INT, "0", "Most connections per anvil_rate_time_unit from one client (0 = no limit).", G)
_p("smtpd_client_auth_rate_limit", INT, "0", "Most AUTH commands per anvil_rate_time_unit from one client (0 = no limit).", G)
_p("anvil_rate_time_unit", SECONDS, "60s", "Time unit for the rate limits.", G)
_p("smtpd_forbid_bare_newline", t.Choice(("yes", "normalize", "reject", "no")), "yes", "SMTP smuggling defence; only CRLF.CRLF ever ends DATA. yes: refuse message data containing a bare LF (550), read commands that end in a bare LF as lines (stricter than Postfix's normalize, and no $mynetworks exemption); reject: also end the session on a command with a bare LF (521); normalize or no: accept bare LF in data.", G)
_p("smtputf8_enable", BOOL, "yes", "Offer SMTPUTF8 (RFC 6531) and accept UTF-8 addresses with it.", G)
_p("header_size_limit", INT, "102400", "Largest message header accepted, in bytes; a message with a larger header is refused (552 5.3.4) where Postfix would truncate it.", G)
_p("smtpd_client_limit", INT, "1000", "Most simultaneous SMTP sessions in all (like Postfix's process limit); further clients get 421 4.3.2. 0 = no limit.", G, origin="mailroom")

# -- routing and queue ------------------------------------------------------------------
G = "routing"
_p("virtual_mailbox_base", PATH, "${data_directory}/vmail", "Root of the Maildirs: ${virtual_mailbox_base}/DOMAIN/USER/Maildir.", G)
_p("mail_nfs_storage", BOOL, "no", "yes when virtual_mailbox_base is on NFS shared by several nodes: IMAP and POP3 then list a folder at every look instead of trusting the directory times, which NFS clients cache (Dovecot's setting).", G, origin="dovecot")
_p("mail_index_cache_messages", INT, "100000", "How many messages' listings IMAP and POP3 keep in memory between sessions (about 650 bytes each), so that a new session opens a big, unchanged folder without reading its index again; least recently used folders go first. 0 = keep none.", G, origin="mailroom")
_p("relayhost", STR, "", "Send all non-local mail through this host ([host]:port disables MX look-up).", G)
_p("transport_maps", TABLES, "", "Per-domain routes: inline:{ example.com=smtp:[127.0.0.1]:2626 } or texthash:/path.", G)
_p("maximal_queue_lifetime", DAYS, "5d", "Time a message may stay queued before it bounces.", G, restart=True)
_p("bounce_queue_lifetime", DAYS, "5d", "Time a bounce may stay queued before it is dropped.", G, restart=True)
_p("minimal_backoff_time", SECONDS, "300s", "Shortest time between delivery attempts of a deferred message.", G, restart=True)
_p("maximal_backoff_time", SECONDS, "4000s", "Longest time between delivery attempts of a deferred message.", G, restart=True)
_p("queue_run_delay", SECONDS, "300s", "How often the deferred queue is scanned.", G, restart=True)
_p("delay_warning_time", HOURS, "0h", "Send a delay warning after this long (0 = never).", G)
_p("2bounce_notice_recipient", STR, "postmaster", "Who gets a notice that a bounce itself could not be delivered; qualified with $mydomain when it has no domain (mailroom has no local system domain).", G)
_p("default_destination_concurrency_limit", INT, "20", "Parallel deliveries to one destination.", G, restart=True)
_p("smtp_destination_concurrency_limit", INT, "$default_destination_concurrency_limit", "Parallel SMTP deliveries to one destination.", G, restart=True)
_p("quota_exceeded_temporary", BOOL, "no", "Answer a full mailbox with 4.2.2 (retry) instead of 5.2.2 (bounce).", G, origin="mailroom", restart=True)

# -- mailroom's own ---------------------------------------------------------------------
G = "mailroom"
_p("data_directory", PATH, "${config_directory}/data", "Directory for the SQLite directory, pid file and other state.", G, origin="mailroom", restart=True)
_p("queue_directory", PATH, "${config_directory}/queue", "Directory of the durable mail queue.", G, origin="mailroom", restart=True)
_p("directory_url", STR, "sqlite:///${data_directory}/directory.db", "SQLAlchemy URL of the users/domains/aliases store (sqlite://, postgresql://, mysql://).", G, origin="mailroom", restart=True)
_p("directory_cache_ttl", SECONDS, "10s", "How long directory look-ups (domains, users, aliases) are cached, like proxymap; 0 = no cache. Changes made on this host are seen at once.", G, origin="mailroom")
_p("maillog_file", PATH, "", "Also write log lines to this file.", G)
_p("dns_nameservers", t.HostPortList(), "", "Resolvers for MX/A/AAAA/RBL look-ups (host[:port] list); empty = the system's.", G, origin="mailroom")
_p("smtp_listen", LISTEN, "0.0.0.0:25", "MX listener addresses (host:port list; empty = off).", G, origin="mailroom", restart=True)
_p("submission_listen", LISTEN, "0.0.0.0:587", "Submission listener: STARTTLS, then AUTH required before MAIL (RFC 6409).", G, origin="mailroom", restart=True)
_p("submissions_listen", LISTEN, "0.0.0.0:465", "Submission over implicit TLS (RFC 8314); AUTH required.", G, origin="mailroom", restart=True)
_p("imap_listen", LISTEN, "", "IMAP listener (143).", G, origin="mailroom", restart=True)
_p("imaps_listen", LISTEN, "", "IMAP over implicit TLS (993).", G, origin="mailroom", restart=True)
_p("pop3_listen", LISTEN, "", "POP3 listener (110).", G, origin="mailroom", restart=True)
_p("login_client_connection_count_limit", INT, "20", "IMAP and POP3: most simultaneous connections from one client address, $mynetworks exempt (0 = no limit).", G, origin="mailroom")
_p("login_client_limit", INT, "1000", "IMAP and POP3: most simultaneous sessions per protocol (like Dovecot's client_limit); 0 = no limit.", G, origin="mailroom")
_p("imap_timeout", SECONDS, "30m", "IMAP idle time before autologout (RFC 3501 §5.4: at least 30 minutes).", G, origin="mailroom")
_p("pop3_timeout", SECONDS, "10m", "POP3 idle time before the session is closed (RFC 1939 §3: at least 10 minutes).", G, origin="mailroom")
_p("pop3s_listen", LISTEN, "", "POP3 over implicit TLS (995).", G, origin="mailroom", restart=True)
_p("auth_listen", PATH, "", "Path of a Dovecot-auth-protocol socket for a real Postfix (smtpd_sasl_type = dovecot); empty = off.", G, origin="mailroom", restart=True)
_p("auth_listen_mode", t.Mode(), "0660", "File mode of the auth_listen socket.", G, origin="mailroom", restart=True)
_p("auth_listen_user", t.String(), "", "Owner of the auth_listen socket, a user name or uid (postfix for Postfix's private/auth); empty = the server's user.", G, origin="mailroom", restart=True)
_p("auth_listen_group", t.String(), "", "Group of the auth_listen socket, a name or gid; empty = the server's group.", G, origin="mailroom", restart=True)
_p("shutdown_timeout", SECONDS, "10s", "On SIGTERM, how long sessions may finish before they are closed.", G, origin="mailroom")

PARAMETERS: dict[str, Parameter] = {p.name: p for p in _PARAMS}
GROUPS: list[str] = list(dict.fromkeys(p.group for p in _PARAMS))
READ_ONLY = frozenset({"config_directory"})
