#!/usr/bin/env python3
"""A real SMTP server for the email channel's tests: aiosmtpd (pinned in .ci/install-deps) on
127.0.0.1 with STARTTLS required (the certificate the test made with rcgen) and AUTH required
after TLS, or, with MODE "tls", implicit TLS (SMTPS: TLS from the first byte, as on port 465)
and AUTH required. Each message it accepts is written to OUT as one JSON file (envelope, headers, the
decoded text and HTML parts, the authenticated user, whether TLS was on), so the test can count
and read them. Prints "ready" once it accepts connections; stops on SIGTERM or when stdin
closes.

    receiver.py PORT CERT KEY USER PASSWORD OUT [starttls|tls]
"""

import email
import email.policy
import json
import os
import signal
import ssl
import sys
import threading
import uuid
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd sets its deprecated Session.login_data itself on every AUTH.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
# Implicit TLS: the whole connection is TLS, which aiosmtpd's check does not see.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

port, cert, key, user, password, out = sys.argv[1:7]
mode = sys.argv[7] if len(sys.argv) > 7 else "starttls"
if mode not in ("starttls", "tls"):
    sys.exit(f"MODE must be starttls or tls, not {mode!r}")


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_subtype()] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": msg["Message-ID"],
            "event_id": msg["X-Aiscout-Event-Id"],
            "subject": msg["Subject"],
            "from": msg["From"],
            "to": msg["To"],
            "date": msg["Date"],
            "content_type": msg.get_content_type(),
            "text": parts.get("plain"),
            "html": parts.get("html"),
            "auth_user": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
            # STARTTLS sets session.ssl; on an implicit TLS connection the transport is TLS.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "mode": mode,
        }
        tmp = os.path.join(out, "." + uuid.uuid4().hex)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out, uuid.uuid4().hex + ".json"))
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
if mode == "tls":
    # aiosmtpd's AUTH-needs-TLS check looks for STARTTLS only; the connection is TLS from its
    # first byte here, and AUTH is still required.
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        ssl_context=context,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
else:
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
controller.start()
print("ready", flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.wait()
controller.stop()
