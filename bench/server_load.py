#!/usr/bin/python3
"""server_load.py - load generator for cdam-server on loopback (Python stdlib only).

    bench/server_load.py --url http://127.0.0.1:8080 --image IMG [--concurrency 1,2,8]
        [--seconds 20] [--size 224] [--cached-classes 20] [--json]

For each concurrency c: c client threads, each with its own keep-alive connection,
send POST /explain (methods ["cdam"], the top-1 class, the same image) back to back for
--seconds; prints requests/s, p50/p99 latency and the number of errors (any status
other than 200). Start the server with --cache-mb 0 for these runs, so that every
request pays decode + forward + CDAM, as the engine's own benchmark does.

--cached-classes K: then asks for K different classes of one image one after the
other, after a first request that fills the forward cache; reports p50/p99 of those
cache hits (the server must run with its cache on for this part: use --cached-url to
point it at a second server, or run the script twice).
"""
import argparse
import base64
import http.client
import json
import sys
import threading
import time
import urllib.parse


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    i = int(k)
    j = min(i + 1, len(xs) - 1)
    return xs[i] + (k - i) * (xs[j] - xs[i])


def post(conn, body):
    conn.request("POST", "/explain", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def run_level(host, port, body, c, seconds):
    lat, errs, lock = [], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=600)
        mine, bad = [], 0
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                st, _ = post(conn, body)
            except OSError:
                st = -1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=600)
            dt = time.monotonic() - t0
            if st == 200:
                mine.append(dt)
            else:
                bad += 1
        conn.close()
        with lock:
            lat.extend(mine)
            errs[0] += bad

    t0 = time.monotonic()
    th = [threading.Thread(target=client) for _ in range(c)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.monotonic() - t0
    return {"concurrency": c, "requests": len(lat), "errors": errs[0], "seconds": round(wall, 2),
            "rps": round(len(lat) / wall, 3), "p50_ms": round(percentile(lat, 50) * 1e3, 1),
            "p99_ms": round(percentile(lat, 99) * 1e3, 1)}


def run_cached(host, port, img64, size, k):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    base = {"image": img64, "methods": ["cdam"], "size": [size, size]}
    st, _ = post(conn, json.dumps(dict(base, classes=[0])))
    lat, hits = [], 0
    for cls in range(1, k + 1):
        t0 = time.monotonic()
        st, data = post(conn, json.dumps(dict(base, classes=[cls])))
        dt = time.monotonic() - t0
        if st == 200:
            lat.append(dt)
            hits += json.loads(data)["cache"] == "hit"
    conn.close()
    return {"requests": len(lat), "hits": hits, "p50_ms": round(percentile(lat, 50) * 1e3, 2),
            "p99_ms": round(percentile(lat, 99) * 1e3, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--cached-url", help="server with its cache on (default: --url)")
    ap.add_argument("--image", required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--concurrency", default="1,2,8")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--cached-classes", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    img64 = base64.b64encode(open(a.image, "rb").read()).decode()
    body = json.dumps({"image": img64, "methods": ["cdam"], "size": [a.size, a.size]})
    u = urllib.parse.urlparse(a.url)
    out = {"levels": []}
    if a.concurrency:
        for c in [int(x) for x in a.concurrency.split(",")]:
            r = run_level(u.hostname, u.port, body, c, a.seconds)
            out["levels"].append(r)
            if not a.json:
                print(f"concurrency {c}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                      f"{r['requests']} ok, {r['errors']} errors", flush=True)
    if a.cached_classes:
        cu = urllib.parse.urlparse(a.cached_url or a.url)
        r = run_cached(cu.hostname, cu.port, img64, a.size, a.cached_classes)
        out["cached"] = r
        if not a.json:
            print(f"cached other class: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms ({r['hits']}/{r['requests']} hits)")
    if a.json:
        print(json.dumps(out))
    return 0 if all(r["errors"] == 0 for r in out["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
