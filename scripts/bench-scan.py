#!/usr/bin/env python3
"""Benchmarks scanning: read rates on the degraded label corpus beside zxing-cpp alone, and photos
per second through POST /api/sessions/{id}/scan-barcode on a release server.

Usage: bench-scan.py SESSIOND_BINARY [--labels N] [--seconds S] [--clients C] [--output FILE]

It makes the corpus (scripts/scan-corpus.py, N labels per degradation), starts the server on a
fresh SQLite file, and for every photo:
  - zxing-cpp (the PyPI package, 3.x) reads the image alone;
  - sessiond reads it in a session that holds no packages ("alone": decoders and OCR with check
    digits only) and in a session holding the photo's barcode among look-alikes ("matched").
A read counts when the answer is found and is the label's barcode; a wrong read is one found with
any other barcode. Then C clients send photos of the corpus for S seconds (lookup in a session
of every label's barcodes) and the photos per second and latencies are reported.
Needs: Pillow, zxing-cpp (scripts/bench --scan installs it), zint.
"""
import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import zxingcpp
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


class Client:
    def __init__(self, port, key):
        self.port, self.key = port, key

    def request(self, method, path, body=None, content_type="application/json"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": "Bearer " + self.key}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_type == "application/json":
                body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, (json.loads(data) if data else None)

    def session(self, barcodes):
        status, session = self.request("POST", "/api/sessions/create", {"user_id": "bench-scan"})
        assert status == 201, session
        if barcodes:
            status, added = self.request("POST", "/api/sessions/%s/packages" % session["session_id"], {"packages": [{"barcode": b} for b in barcodes]})
            assert status == 200, added
        return session["session_id"]

    def scan(self, session, image, content_type):
        return self.request("POST", "/api/sessions/%s/scan-barcode" % session, image, content_type)


def zxing_reads(path):
    results = zxingcpp.read_barcodes(Image.open(path))
    return [r.text for r in results]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--labels", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--port", type=int, default=18391)
    parser.add_argument("--output")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="sessiond-bench-scan-")
    corpus = os.path.join(scratch, "corpus")
    subprocess.run([sys.executable, os.path.join(HERE, "scan-corpus.py"), corpus, "--labels", str(args.labels), "--seed", "11"], check=True)
    photos = json.load(open(os.path.join(corpus, "manifest.json")))

    key = "bench-scan-admin-" + uuid.uuid4().hex
    env = dict(os.environ, ADMIN_API_KEY=key, RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="1000000")
    server = subprocess.Popen(
        [args.binary, "serve", "--port", str(args.port), "--database", "sqlite:" + os.path.join(scratch, "bench.sqlite"), "--log-level", "error"],
        env=env, stdout=subprocess.DEVNULL)
    try:
        client = Client(args.port, key)
        for _ in range(100):
            try:
                if client.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        report = run(client, corpus, photos, args)
    finally:
        server.terminate()
        server.wait()
    print(report)
    if args.output:
        with open(args.output, "w") as out:
            out.write(report + "\n")


def run(client, corpus, photos, args):
    empty = client.session([])
    degradations = []
    tallies = {}
    zxing_time = 0.0
    for photo in photos:
        path = os.path.join(corpus, photo["file"])
        image = open(path, "rb").read()
        content_type = "image/png" if photo["file"].endswith(".png") else "image/jpeg"
        started = time.perf_counter()
        texts = zxing_reads(path)
        zxing_time += time.perf_counter() - started
        matched_session = client.session(photo["known"])
        row = tallies.setdefault(photo["degradation"], {"photos": 0, "legible": 0, "zxing": 0, "zxing_wrong": 0, "alone": 0, "matched": 0,
                                                        "wrong": 0, "matched_legible": 0, "methods": {}})
        if photo["degradation"] not in degradations:
            degradations.append(photo["degradation"])
        row["photos"] += 1
        row["legible"] += photo["legible"]
        # zxing-cpp gives a UPC-A as its EAN-13 form (a leading zero): the same code.
        if photo["barcode"] in texts or (photo["format"] == "upca" and "0" + photo["barcode"] in texts):
            row["zxing"] += 1
        elif texts:
            row["zxing_wrong"] += 1
        for mode, session in (("alone", empty), ("matched", matched_session)):
            status, answer = client.scan(session, image, content_type)
            assert status == 200, answer
            if answer["found"]:
                if answer["barcode"] == photo["barcode"]:
                    row[mode] += 1
                    if mode == "matched":
                        row["methods"][answer["method"]] = row["methods"].get(answer["method"], 0) + 1
                        row["matched_legible"] += photo["legible"]
                else:
                    row["wrong"] += 1

    lines = ["### Read rates (%d photos, 1280×960, %d labels per degradation)" % (len(photos), args.labels), "",
             "| degradation | zxing-cpp 3 alone | sessiond alone | sessiond matched | wrong reads (zxing-cpp / sessiond) | sessiond steps (matched) |",
             "| --- | --- | --- | --- | --- | --- |"]
    total = {"photos": 0, "legible": 0, "zxing": 0, "zxing_wrong": 0, "alone": 0, "matched": 0, "wrong": 0, "matched_legible": 0, "methods": {}}
    for degradation in degradations:
        row = tallies[degradation]
        for name in ("photos", "legible", "zxing", "zxing_wrong", "alone", "matched", "wrong", "matched_legible"):
            total[name] += row[name]
        for method, count in row["methods"].items():
            total["methods"][method] = total["methods"].get(method, 0) + count
        lines.append("| %s | %d/%d | %d/%d | %d/%d | %d / %d | %s |" % (
            degradation, row["zxing"], row["photos"], row["alone"], row["photos"], row["matched"], row["photos"], row["zxing_wrong"], row["wrong"],
            ", ".join("%s %d" % item for item in sorted(row["methods"].items()))))
    lines.append("| **all** | **%d/%d (%.1f%%)** | **%d/%d (%.1f%%)** | **%d/%d (%.1f%%)** | %d / %d | %s |" % (
        total["zxing"], total["photos"], 100.0 * total["zxing"] / total["photos"], total["alone"], total["photos"], 100.0 * total["alone"] / total["photos"],
        total["matched"], total["photos"], 100.0 * total["matched"] / total["photos"], total["zxing_wrong"], total["wrong"],
        ", ".join("%s %d" % item for item in sorted(total["methods"].items()))))
    lines.append("")
    lines.append("Labels whose digits are legible (all but QR codes), read with session matching: %d/%d (%.1f%%). zxing-cpp alone took %.1f ms per photo in this process." % (
        total["matched_legible"], total["legible"], 100.0 * total["matched_legible"] / max(1, total["legible"]), 1000 * zxing_time / len(photos)))

    # Throughput: C clients, S seconds, photos of the whole corpus in random order, lookups in one
    # session holding every label's barcode; and the same with the clean photos only.
    everything = client.session(sorted({p["barcode"] for p in photos}))
    for title, chosen in (("every degradation", photos), ("clean photos only", [p for p in photos if p["degradation"] == "clean"])):
        images = [(open(os.path.join(corpus, p["file"]), "rb").read(), "image/png" if p["file"].endswith(".png") else "image/jpeg") for p in chosen]
        latencies, lock = [], threading.Lock()
        deadline = time.perf_counter() + args.seconds

        def worker(seed):
            rng = random.Random(seed)
            mine = []
            while time.perf_counter() < deadline:
                image, content_type = rng.choice(images)
                started = time.perf_counter()
                status, _ = client.scan(everything, image, content_type)
                mine.append(time.perf_counter() - started)
                assert status == 200
            with lock:
                latencies.extend(mine)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(index,)) for index in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        latencies.sort()
        lines.append("")
        lines.append("Throughput, %s: **%.1f photos/s** with %d clients for %.0f s (%d scans); latency p50 %.0f ms, p99 %.0f ms, max %.0f ms." % (
            title, len(latencies) / elapsed, args.clients, elapsed, len(latencies), 1000 * latencies[len(latencies) // 2],
            1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1000 * latencies[-1]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
