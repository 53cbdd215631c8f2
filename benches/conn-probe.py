#!/usr/bin/env python3
"""Connection probe: how a server holds up under idle and slow-header connections.

Usage: conn-probe.py PID HOST:PORT PATH [IDLE] [SLOW]

Reads the server's thread count and RSS (/proc/PID), opens IDLE (default 1000)
idle TCP connections and SLOW (default 100) connections that send a partial
request head, then measures GET PATH on a fresh connection (median of 5), the
thread count and RSS again, and how many of the opened connections the server
has closed after 1 s and after 15 s. Prints one `key value` per line.

Needs RLIMIT_NOFILE above IDLE + SLOW (it raises the soft limit to the hard one).
"""
import http.client
import resource
import select
import socket
import statistics
import sys
import time


def proc_status(pid, key):
    """An integer field of /proc/PID/status (`Threads`, `VmRSS` in KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def threads(pid):
    return proc_status(pid, "Threads")


def rss_kib(pid):
    return proc_status(pid, "VmRSS")


def get_ms(host, port, path):
    t = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return (time.perf_counter() - t) * 1000.0, r.status


def closed_count(socks):
    """Sockets the server has closed (EOF, reset, or a final 408 before EOF)."""
    p = select.poll()
    for s in socks:
        p.register(s.fileno(), select.POLLIN)
    ready = {fd for fd, ev in p.poll(0)}
    for s in socks:
        if s.fileno() in ready:
            try:
                s.recv(65536, socket.MSG_DONTWAIT)
            except OSError:
                pass
    return len(ready)


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    port = int(port)
    path = sys.argv[3]
    n_idle = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    n_slow = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    print("threads_before", threads(pid))
    print("rss_kib_before", rss_kib(pid))
    idle, slow = [], []
    for _ in range(n_idle):
        idle.append(socket.create_connection((host, port)))
    for _ in range(n_slow):
        s = socket.create_connection((host, port))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: probe\r\n")
        slow.append(s)
    time.sleep(0.5)  # measurement script, not a test: let the server settle
    lat = []
    for _ in range(5):
        ms, status = get_ms(host, port, path)
        lat.append(ms)
    print("get_status", status)
    print("get_ms_median", round(statistics.median(lat), 2))
    print("get_ms_max", round(max(lat), 2))
    print("threads_loaded", threads(pid))
    print("rss_kib_loaded", rss_kib(pid))
    time.sleep(1.0)
    print("closed_after_1s", closed_count(idle + slow))
    time.sleep(14.0)
    print("closed_after_15s", closed_count(idle + slow))
    print("threads_after_15s", threads(pid))
    print("rss_kib_after_15s", rss_kib(pid))


if __name__ == "__main__":
    main()
