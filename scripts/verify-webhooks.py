#!/usr/bin/env python3
"""Checks real webhook deliveries of a real sessiond with an independent verifier: the
`standardwebhooks` package (the Standard Webhooks specification's own Python library).

Starts a receiver on 127.0.0.1, starts `sessiond serve` on a fresh SQLite file (or DATABASE_URL),
makes an endpoint, causes events, rotates the secret, and verifies every delivery with
`standardwebhooks.Webhook(secret).verify(body, headers)` — both secrets during the rotation's
grace period. A tampered body must fail. Exit status 0 when everything verifies.

    python3 scripts/verify-webhooks.py [path/to/sessiond]
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ADMIN = "verify-webhooks-admin-key-0123456789-abcdef"
deliveries = []
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + ADMIN)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def wait_for(count, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with lock:
            if len(deliveries) >= count:
                return list(deliveries)
        time.sleep(0.05)
    raise SystemExit(f"FAIL: waited for {count} deliveries, got {len(deliveries)}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/sessiond"
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    workdir = tempfile.mkdtemp(prefix="sessiond-verify-")
    database = os.environ.get("DATABASE_URL") or f"sqlite:{workdir}/verify.sqlite"
    port = free_port()
    env = dict(os.environ, ADMIN_API_KEY=ADMIN, WEBHOOK_ALLOW_PRIVATE="true", LOG_LEVEL="error")
    server = subprocess.Popen([binary, "serve", "--port", str(port), "--database", database], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/ready", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        endpoint = call(base, "POST", "/api/webhooks", {"url": hook, "events": ["delivery.*", "webhook.test"]})
        first_secret = endpoint["secret"]
        session = call(base, "POST", "/api/sessions/create", {"user_id": "verify"})["session_id"]
        call(base, "POST", f"/api/sessions/{session}/packages", {"packages": [
            {"barcode": "VERIFY1", "value_cents": 1234, "recipient": "Ana",
             "address": {"street": "Rua A", "number": "1", "city": "São Paulo", "state": "SP"}}]})
        call(base, "POST", f"/api/webhooks/{endpoint['endpoint_id']}/test")
        before = wait_for(3)

        rotated = call(base, "POST", f"/api/webhooks/{endpoint['endpoint_id']}/rotate-secret")
        second_secret = rotated["secret"]
        call(base, "POST", f"/api/webhooks/{endpoint['endpoint_id']}/test")
        everything = wait_for(4)
        after = everything[len(before):]

        checked = 0
        for headers, body in before:
            Webhook(first_secret).verify(body, headers)
            checked += 1
        for headers, body in after:
            if len(headers["webhook-signature"].split(" ")) != 2:
                raise SystemExit("FAIL: a delivery during the rotation grace period does not carry two signatures")
            Webhook(first_secret).verify(body, headers)
            Webhook(second_secret).verify(body, headers)
            checked += 1
        headers, body = before[0]
        try:
            Webhook(first_secret).verify(body.replace("VERIFY1", "VERIFY2").replace("delivery", "deliverx"), headers)
            raise SystemExit("FAIL: a tampered body verified")
        except WebhookVerificationError:
            pass
        for headers, body in everything:
            if json.loads(body)["event_id"] != headers["webhook-id"]:
                raise SystemExit("FAIL: webhook-id is not the event_id")
        print(f"verify-webhooks: {checked} deliveries verified by standardwebhooks "
              f"({len(after)} with both secrets during rotation); a tampered body is refused")
    finally:
        server.terminate()
        server.wait(timeout=10)
        receiver.shutdown()


if __name__ == "__main__":
    main()
