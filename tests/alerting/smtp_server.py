#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd, from PyPI) for black-box tests of the alerting email.

    python3 smtp_server.py --port 0 --tls none|starttls|implicit [--cert PEM --key PEM]
                           [--auth USER:PASS [--auth-mechanism PLAIN|LOGIN]]
                           --out DIR [--fail-first N]

Listens on 127.0.0.1, prints one line "ready PORT" on stdout once it accepts connections,
and runs until SIGTERM or SIGINT. Each accepted message is written to DIR as NNNNNN.eml
(the raw bytes) and then NNNNNN.json (envelope, session and the message as Python's
`email` package decodes it); both files appear atomically (temp file, then rename), the
.json last, so a test that sees the .json can read both.

--tls starttls  offers STARTTLS and answers anything but EHLO/HELO/NOOP/QUIT before it,
                AUTH included, with 530 "Must issue a STARTTLS command first".
--tls implicit  speaks TLS from the first byte (SMTPS, as on port 465).
--auth U:P      AUTH PLAIN or LOGIN with these credentials is required before MAIL
                (530 otherwise); wrong credentials get 535. AUTH is offered (EHLO) and
                allowed over plain text with --tls none, and after the TLS handshake
                in the other modes.
--auth-mechanism M  offers only AUTH M (PLAIN or LOGIN); both without it. The mechanism
                a client used is recorded as "auth_mechanism".
--fail-first N  answers the first N messages (after their DATA) with 451, a temporary
                failure, to test that the client retries.
"""
import argparse
import asyncio
import email
import email.message
import email.policy
import hmac
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    """aiosmtpd calls handle_DATA once a message's data has been received."""

    def __init__(self, out: str, fail_first: int):
        self.out = out
        self.fail_left = fail_first
        # Number after the files already there, so a reused DIR is never overwritten.
        self.seq = sum(1 for n in os.listdir(out) if n.endswith(".json"))

    async def handle_DATA(self, server: SMTP, session, envelope) -> str:
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 Temporary failure (--fail-first), please retry"
        self.seq += 1
        base = os.path.join(self.out, f"{self.seq:06d}")
        raw: bytes = envelope.original_content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        # str() of a header under policy.default is its decoded value (RFC 2047
        # encoded-words undone). A header that repeats keeps its first value in
        # "headers"; "header_list" has every header, in order.
        header_list = [[name, str(value)] for name, value in msg.items()]
        headers: dict[str, str] = {}
        for name, value in header_list:
            headers.setdefault(name, value)
        # The transport carries an SSL object both after STARTTLS (aiosmtpd swaps in
        # the TLS transport) and on an implicit-TLS connection.
        tls = server.transport is not None and (
            server.transport.get_extra_info("ssl_object") is not None)
        auth_user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        auth_mechanism = getattr(session, "telltale_auth_mechanism", None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth_user,
            "auth_mechanism": auth_mechanism,
            "tls": tls,
            "subject": str(msg["Subject"]) if "Subject" in msg else None,
            "message_id": str(msg["Message-ID"]) if "Message-ID" in msg else None,
            "headers": headers,
            "header_list": header_list,
            "text": body(msg, "plain"),
            "html": body(msg, "html"),
        }
        write_atomically(base + ".eml", raw)
        write_atomically(base + ".json",
                         json.dumps(record, indent=2, ensure_ascii=False).encode())
        return "250 2.0.0 OK: queued as " + f"{self.seq:06d}"


def body(msg: email.message.EmailMessage, subtype: str):
    """The decoded text/SUBTYPE body (charset and quoted-printable/base64 undone), or None.

    get_body() picks the body part as a mail reader would (inside multipart/alternative
    or related; attachments are not bodies). Lines end in "\n": the email package keeps
    the wire's CRLFs in what it decodes (the .eml keeps them as sent)."""
    part = msg.get_body(preferencelist=(subtype,))
    return part.get_content().replace("\r\n", "\n") if part is not None else None


def write_atomically(path: str, data: bytes) -> None:
    # A dot-name ending in .tmp in the same directory, so a test polling for *.json
    # never sees a half-written file, and the rename cannot cross file systems.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert", help="PEM certificate (chain), for starttls/implicit")
    p.add_argument("--key", help="PEM private key, for starttls/implicit")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH with these")
    p.add_argument("--auth-mechanism", choices=["PLAIN", "LOGIN"],
                   help="offer only this AUTH mechanism")
    p.add_argument("--out", required=True, help="directory for received mail")
    p.add_argument("--fail-first", type=int, default=0, metavar="N",
                   help="answer the first N messages with 451")
    a = p.parse_args()
    if a.tls != "none" and not (a.cert and a.key):
        p.error(f"--tls {a.tls} needs --cert and --key")
    if a.auth is not None and ":" not in a.auth:
        p.error("--auth takes USER:PASS")
    os.makedirs(a.out, exist_ok=True)

    # aiosmtpd logs a deprecation warning on every successful AUTH (its own use of
    # Session.login_data) and warns that auth without TLS is insecure (--tls none
    # --auth, which we want); keep stderr for real errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    asyncio.run(serve(a))


async def serve(a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    handler = Handler(a.out, a.fail_first)
    ctx = None
    if a.tls != "none":
        # Purpose.CLIENT_AUTH = a server-side context; it asks no client certificate.
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)

    authenticator = None
    if a.auth is not None:
        user, password = (s.encode() for s in a.auth.split(":", 1))

        def authenticator(server, session, envelope, mechanism, data) -> AuthResult:
            # Called for AUTH PLAIN and AUTH LOGIN (aiosmtpd's built-in mechanisms,
            # the only ones offered) with a LoginPassword(login, password) of bytes.
            # On failure, handled=False (AuthResult's default is True, meaning "I
            # already replied") makes aiosmtpd answer 535 5.7.8 itself; without it
            # the client waits for a reply that never comes.
            ok = (isinstance(data, LoginPassword)
                  and hmac.compare_digest(data.login, user)
                  and hmac.compare_digest(data.password, password))
            if ok:
                session.telltale_auth_mechanism = mechanism
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def factory() -> SMTP:
        # One SMTP protocol object per connection.
        return SMTP(
            handler,
            hostname="localhost",  # else aiosmtpd calls socket.getfqdn() (DNS)
            ident="telltale-test-smtp (aiosmtpd)",
            # STARTTLS is offered, and required, only in starttls mode: in implicit
            # mode the connection is TLS already (asyncio wraps it, see create_server).
            tls_context=ctx if a.tls == "starttls" else None,
            require_starttls=a.tls == "starttls",
            # aiosmtpd's auth_require_tls looks only for a STARTTLS it did itself, so
            # it would refuse AUTH (538) on an implicit-TLS connection too: keep it
            # (the default, True) only for starttls.
            auth_require_tls=a.tls == "starttls",
            auth_required=a.auth is not None,
            authenticator=authenticator,
            auth_exclude_mechanism=(
                [m for m in ("PLAIN", "LOGIN") if m != a.auth_mechanism]
                if a.auth_mechanism else None),
            enable_SMTPUTF8=True,  # as most real servers: accept MAIL ... SMTPUTF8
            loop=loop,
        )

    # asyncio directly rather than aiosmtpd's Controller: the Controller wants a fixed
    # port (it connects to itself to check it started, which --port 0 defeats) and runs
    # in a thread; here the bound port is simply read back from the socket.
    server = await loop.create_server(
        factory, host="127.0.0.1", port=a.port,
        ssl=ctx if a.tls == "implicit" else None)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # a SIGINT before the handler is installed
        sys.exit(130)
