"""Awkward messages for comparing FETCH answers between Dovecot and mailroom.

Each message starts with an `X-Corpus: <name>` field so both sides can be matched by name,
whatever UIDs they give. Files are written as they are here (LF line ends), except the
ones in CRLF_FILES, stored with CRLF line ends as some programs write them, and
mixed_line_ends (LF header, CRLF body, no final line end).

What they cover: plain ASCII with every envelope field; RFC 2047 encoded words in Subject
and display names; groups (`undisclosed-recipients:;`, a group with members, an empty
one); missing Date/Subject/From/Message-ID; present but empty Subject and In-Reply-To;
two authors in From; multipart/alternative with a preamble and epilogue; multipart/mixed
with base64 attachments (name/filename, and RFC 2231 continuations); an attached
message/rfc822 holding a multipart; multiparts three deep; part headers (Content-ID,
-Description, -MD5, -Disposition with parameters, -Language, -Location); 8-bit UTF-8 and
Latin-1 text; long folded headers (a fold before a TAB); CRLF files; no body at all and an
empty body; quoted local parts, address literals, comments, a source route, addresses
without a domain; a single non-text part in upper case; a top-level message/rfc822; a
Content-Type without a subtype; runs of white space in Subject and a display name.
"""

from __future__ import annotations

import base64

PDF = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) * 2).decode()

CORPUS: dict[str, str] = {}

CORPUS["plain"] = """\
Return-Path: <alice@example.com>
Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
From: Alice Example <alice@example.com>
Sender: Secretary <sec@example.com>
Reply-To: Replies <replies@example.com>
To: John <john@example.org>, bob@example.net
Cc: carol@example.net
Bcc: dave@example.net
Subject: Plain ASCII message
Message-ID: <B27397-0100000@example.com>
In-Reply-To: <earlier@example.com>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

Hello Joe, do you think we can meet at 3:30 tomorrow?

A second paragraph, so BODY[TEXT]<0.100> has more than 100 octets to cut from.
"""

CORPUS["encoded_words"] = """\
Date: Tue, 2 Jan 2024 08:00:00 +0100
From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>
To: =?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>, "=?utf-8?q?M=C3=BCller=2C_Hans?=" <hans@example.de>
Subject: =?UTF-8?B?w5xiZXIgZGllIEZldGNoLVBhcml0w6R0?=
 =?ISO-8859-1?Q?_und_mehr_=E4=F6=FC?=
Message-ID: <encoded@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe
"""

CORPUS["groups"] = """\
Date: Wed, 3 Jan 2024 09:00:00 +0000
From: Mailer <mailer@example.com>
To: undisclosed-recipients:;
Cc: Team: ann@example.com, "Bo B." <bo@example.com>;, outsider@example.net
Bcc: Empty Group:;
Subject: Groups in the address fields
Message-ID: <groups@example.com>

Body.
"""

CORPUS["missing"] = """\
To: john@example.org
X-Note: no Date, no Subject, no From, no Message-ID

Nothing but a recipient.
"""

CORPUS["multiple_from"] = """\
Date: Thu, 4 Jan 2024 10:00:00 +0000
From: First <first@example.com>, second@example.com
Sender: The Sender <sender@example.com>
To: john@example.org
Subject: Two authors
Message-ID: <twofrom@example.com>

Two authors, one sender.
"""

CORPUS["alternative"] = """\
Date: Fri, 5 Jan 2024 11:00:00 +0000
From: Newsletter <news@example.com>
To: john@example.org
Subject: multipart/alternative
Message-ID: <alt@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-boundary"

This is the preamble.
--alt-boundary
Content-Type: text/plain; charset="utf-8"; format=flowed
Content-Transfer-Encoding: quoted-printable

Hello in plain text, caf=C3=A9.
--alt-boundary
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<html><body><p>Hello in <b>HTML</b>.</p></body></html>

--alt-boundary--
This is the epilogue.
"""

CORPUS["attachment"] = f"""\
Date: Sat, 6 Jan 2024 12:00:00 +0000
From: Sender <sender@example.com>
To: john@example.org
Subject: multipart/mixed with attachments
Message-ID: <mixed@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=mixed42

--mixed42
Content-Type: text/plain; charset=us-ascii

See the attachments.

--mixed42
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"; size=530
Content-Transfer-Encoding: base64

{PDF}
--mixed42
Content-Type: application/octet-stream;
 name*0*=UTF-8''%C3%BCbersicht%20;
 name*1*=%32%30%32%34.bin
Content-Disposition: attachment;
 filename*0*=UTF-8''%C3%BCbersicht%20;
 filename*1*=%32%30%32%34.bin
Content-Transfer-Encoding: base64

AAECAwQFBgcICQ==
--mixed42--
"""

CORPUS["rfc822_attached"] = """\
Date: Sun, 7 Jan 2024 13:00:00 +0000
From: Forwarder <fwd@example.com>
To: john@example.org
Subject: Fwd: the original
Message-ID: <fwd@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

Forwarded below.

--outer
Content-Type: message/rfc822
Content-Description: the original message

Date: Sat, 6 Jan 2024 09:30:00 -0500
From: Original Author <author@example.net>
To: Fwd <fwd@example.com>
Subject: the original
Message-ID: <original@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=us-ascii

Original text.
--inner
Content-Type: text/html; charset=us-ascii

<p>Original text.</p>
--inner--

--outer--
"""

CORPUS["nested"] = """\
Date: Mon, 8 Jan 2024 14:00:00 +0000
From: Nested <nested@example.com>
To: john@example.org
Subject: nested multiparts
Message-ID: <nested@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="level1"

--level1
Content-Type: multipart/related; boundary="level2"; type="multipart/alternative"

--level2
Content-Type: multipart/alternative; boundary="level3"

--level3
Content-Type: text/plain; charset=us-ascii

Deep plain.
--level3
Content-Type: text/html; charset=us-ascii

<p>Deep <img src="cid:img1@example.com"></p>
--level3--

--level2
Content-Type: image/png
Content-ID: <img1@example.com>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--level2--

--level1
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline

Trailer part.
--level1--
"""

CORPUS["part_headers"] = """\
Date: Tue, 9 Jan 2024 15:00:00 +0000
From: Parts <parts@example.com>
To: john@example.org
Subject: MIME part header fields
Message-ID: <parts@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"
Content-Language: en

--b
Content-Type: text/plain; charset=iso-8859-1
Content-ID: <part1@example.com>
Content-Description: A described part
Content-Transfer-Encoding: 8bit
Content-Disposition: inline; filename="note.txt"; creation-date="Tue, 9 Jan 2024 15:00:00 +0000"
Content-Language: de, en-GB
Content-Location: http://www.example.com/note.txt
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

Caf\xe9 in Latin-1, announced as 8bit.

--b
Content-Type: text/csv; charset=us-ascii; header=present
Content-Disposition: attachment; filename=data.csv

a,b
1,2

--b--
"""

CORPUS["utf8_headers"] = """\
Date: Wed, 10 Jan 2024 16:00:00 +0000
From: Jürgen Müller <juergen@example.de>
To: Zoë <zoe@example.org>
Subject: Grüße aus Köln – 8-bit UTF-8 in the header
Message-ID: <utf8@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße!
"""

_LONG = " ".join(f"word{i:03d}" for i in range(60))
_REFERENCES = "\n ".join(f"<ref{i}.{'x' * 40}@example.com>" for i in range(12))
_MANY_TO = ",\n ".join(f"Recipient Number {i} <rcpt{i}@example.org>" for i in range(15))
CORPUS["long_folded"] = f"""\
Date: Thu, 11 Jan 2024
 17:00:00
 +0000
From: Long <long@example.com>
To: {_MANY_TO}
Subject: {_LONG[:70]}
 {_LONG[70:200]}
\t{_LONG[200:]}
References: {_REFERENCES}
Message-ID:
 <long@example.com>

Short body.
"""

CORPUS["crlf_file"] = """\
Date: Fri, 12 Jan 2024 18:00:00 +0000
From: Windows <win@example.com>
To: john@example.org
Subject: stored with CRLF line ends
Message-ID: <crlf@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="crlf"

--crlf
Content-Type: text/plain

First part.
--crlf
Content-Type: text/plain

Second part.
--crlf--
"""

CORPUS["no_body"] = """\
Date: Sat, 13 Jan 2024 19:00:00 +0000
From: Empty <empty@example.com>
To: john@example.org
Subject: no body at all, not even the blank line
Message-ID: <nobody@example.com>
"""

CORPUS["empty_body"] = """\
Date: Sun, 14 Jan 2024 20:00:00 +0000
From: Empty <empty@example.com>
To: john@example.org
Subject: a blank line and nothing after it
Message-ID: <emptybody@example.com>

"""

CORPUS["quoted_local_parts"] = """\
Date: Mon, 15 Jan 2024 21:00:00 +0000
From: "john..doe"@example.org
Reply-To: "Quoted, Name" <"with space"@example.com>
To: john@example.org
Subject: quoted local parts
Message-ID: <quoted@example.com>

Body.
"""

CORPUS["address_literal"] = """\
Date: Mon, 15 Jan 2024 21:05:00 +0000
From: Literal <user@[192.0.2.1]>
To: "Joe Q. Public" <john.q.public@example.com>, other@[IPv6:2001:db8::1]
Subject: address literals
Message-ID: <literal@example.com>

Body.
"""

CORPUS["comments"] = """\
Date: Mon, 15 Jan 2024 21:10:00 +0000
From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>
To: john@example.org (John at home)
Subject: comments in addresses
Message-ID: <comments@example.com>

Body.
"""

CORPUS["source_route"] = """\
Date: Mon, 15 Jan 2024 21:15:00 +0000
From: Routed <@relay.example,@gw.example:routed@example.com>
To: john@example.org
Subject: an obsolete source route
Message-ID: <route@example.com>

Body.
"""

CORPUS["no_domain"] = """\
Date: Mon, 15 Jan 2024 21:20:00 +0000
From: Local <local-only>
To: john@example.org, bare-local
Subject: addresses without a domain
Message-ID: <nodomain@example.com>

Body.
"""

CORPUS["empty_fields"] = """\
Date: Mon, 15 Jan 2024 21:25:00 +0000
From: Empty Subject <empty@example.com>
To: john@example.org
Subject:
In-Reply-To:
Message-ID: <emptyfields@example.com>

Subject and In-Reply-To are present but empty.
"""

CORPUS["single_part_binary"] = """\
Date: Tue, 16 Jan 2024 22:00:00 +0000
From: Scanner <scanner@example.com>
To: john@example.org
Subject: a single non-text part
Message-ID: <binary@example.com>
MIME-Version: 1.0
Content-Type: Application/Octet-Stream; Name=scan.bin
Content-Transfer-Encoding: BASE64
Content-Disposition: ATTACHMENT; FILENAME=scan.bin

AAECAwQFBgcICQoLDA0ODw==
"""

CORPUS["top_level_rfc822"] = """\
Date: Wed, 17 Jan 2024 23:00:00 +0000
From: Bouncer <bounce@example.com>
To: john@example.org
Subject: a top-level message/rfc822
Message-ID: <toprfc822@example.com>
MIME-Version: 1.0
Content-Type: message/rfc822

Date: Wed, 17 Jan 2024 22:00:00 +0000
From: Inner <inner@example.com>
To: bounce@example.com
Subject: the inner message
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="in"

--in
Content-Type: text/plain

Inner part one.

--in
Content-Type: text/plain

Inner part two.

--in--
"""

CORPUS["no_subtype"] = """\
Date: Thu, 18 Jan 2024 08:00:00 +0000
From: Broken <broken@example.com>
To: john@example.org
Subject: Content-Type without a subtype
MIME-Version: 1.0
Content-Type: text

Body.
"""

CORPUS["white_space"] = """\
Date: Fri, 19 Jan 2024 09:00:00 +0000
From: "Two  Spaces" <spaces@example.com>
To: john@example.org
Subject:   runs   of    spaces\tand a tab\x20\x20
Reply-To:
Sender:
Bcc:

Empty Reply-To, Sender and Bcc fields.
"""

CORPUS["mixed_line_ends"] = "X-Mixed: LF header, CRLF body\n\nline one\r\nline two\r\nlast line, no line end"

CRLF_FILES = {"plain", "crlf_file", "comments"}


def corpus_bytes() -> dict[str, bytes]:
    """name -> the file's bytes ("X-Corpus: name" first; 8-bit text kept as written)."""
    out = {}
    for name, text in CORPUS.items():
        # The é of part_headers is Latin-1 (one octet, as its charset says); the rest is UTF-8.
        data = (f"X-Corpus: {name}\n" + text).encode("utf-8")
        if name == "part_headers":
            data = data.replace("\xe9".encode(), b"\xe9")
        if name in CRLF_FILES:
            data = data.replace(b"\n", b"\r\n")
        out[name] = data
    return out
