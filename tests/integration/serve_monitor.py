"""Watches a running `cifar100 serve` from its own process (so that attack threads elsewhere cannot delay the
measurements): every 20 ms a GET /ping on a fresh connection, every 100 ms a valid PNG /invocations, every
50 ms the server's resident memory. One line per sample, flushed at once, until the stop file exists:

    ping <unix time> <ms> <status>
    valid <unix time> <ms> <status>
    rss <unix time> <KiB>

usage: serve_monitor.py PORT PID PNG_FILE OUT_FILE STOP_FILE"""
import http.client
import os
import sys
import threading
import time


def main():
    port, pid, png, out, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    body = open(png, "rb").read()
    f = open(out, "w", buffering=1)
    lock = threading.Lock()

    def emit(line):
        with lock:
            f.write(line + "\n")

    def request(method, path, data=None, headers=None):
        t0 = time.perf_counter()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request(method, path, body=data, headers=headers or {})
            r = c.getresponse()
            r.read()
            c.close()
            status = r.status
        except OSError as e:
            status = 0
            emit(f"error {time.time():.3f} {type(e).__name__}")
        return (time.perf_counter() - t0) * 1000, status

    def pinger():
        while not os.path.exists(stop):
            ms, st = request("GET", "/ping")
            emit(f"ping {time.time():.3f} {ms:.2f} {st}")
            time.sleep(0.02)

    def valid():
        while not os.path.exists(stop):
            ms, st = request("POST", "/invocations", body, {"Content-Type": "image/png"})
            emit(f"valid {time.time():.3f} {ms:.2f} {st}")
            time.sleep(0.1)

    def rss():
        while not os.path.exists(stop):
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        emit(f"rss {time.time():.3f} {line.split()[1]}")
            except OSError:
                emit(f"rss {time.time():.3f} -1")
            time.sleep(0.05)

    threads = [threading.Thread(target=t) for t in (pinger, valid, rss)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
