"""Runs the scim2-tester conformance checks (PyPI scim2-tester, pinned in .ci/install-deps)
against a collector's /scim/v2 and prints one JSON line per check.

Usage: conformance.py BASE_URL CA_PEM  (the bearer token is read from the SCIM_TOKEN
environment variable so it never appears in a process listing).
Exits 0 when no check is ERROR or CRITICAL, 1 otherwise, 2 on a usage error.
"""

import json
import os
import ssl
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILING = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    if len(sys.argv) != 3 or "SCIM_TOKEN" not in os.environ:
        print("usage: SCIM_TOKEN=... conformance.py BASE_URL CA_PEM", file=sys.stderr)
        return 2
    base, ca = sys.argv[1], sys.argv[2]
    token = os.environ["SCIM_TOKEN"]
    http = httpx2.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=ca),
        timeout=30.0,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed = 0
    for r in results:
        bad = r.status in FAILING
        failed += bad
        print(json.dumps({
            "status": r.status.name,
            "title": r.title,
            "resource_type": r.resource_type,
            "reason": r.reason,
        }))
    print(json.dumps({"checks": len(results), "failed": failed}))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
