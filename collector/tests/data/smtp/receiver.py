#!/usr/bin/env python3
"""A real SMTP server for the email channel's tests: aiosmtpd (pinned in .ci/install-deps) on
127.0.0.1 with STARTTLS required (the certificate the test made with rcgen) and AUTH required
after TLS. Each message it accepts is written to OUT as one JSON file (envelope, headers, the
decoded text and HTML parts, the authenticated user, whether TLS was on), so the test can count
and read them. Prints "ready" once it accepts connections; stops on SIGTERM or when stdin
closes.

    receiver.py PORT CERT KEY USER PASSWORD OUT
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

port, cert, key, user, password, out = sys.argv[1:7]


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
            "tls": session.ssl is not None,
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
