#!/usr/bin/env python3
"""A stand-in OpenAI-compatible streaming server for trying aif-loadgen.

POST /v1/completions or /v1/chat/completions: answers `stream: true` with
TOKENS chunks, the first FIRST_MS after the request arrived, then one every
EVERY_MS, a usage chunk when `stream_options.include_usage` is set, and
`[DONE]`. HTTP/1.1 keep-alive, one thread per connection.

Usage: openai-stub.py PORT [FIRST_MS (150)] [EVERY_MS (25)] [TOKENS (5)]
"""
import json
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
FIRST = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.150
EVERY = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.025
TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 5


def chunk(conn, data):
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def handle(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        arrived = time.monotonic()
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(buf) < length:
            buf += conn.recv(65536)
        body, buf = json.loads(buf[:length] or b"{}"), buf[length:]
        chat = "messages" in body
        prompt = body["messages"][0]["content"] if chat else body.get("prompt", "")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(TOKENS):
            time.sleep(max(0.0, arrived + FIRST + EVERY * i - time.monotonic()))
            choice = {"index": 0, "delta": {"content": f"t{i} "}} if chat else {"index": 0, "text": f"t{i} "}
            chunk(conn, b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": len(str(prompt).split()), "completion_tokens": TOKENS}
            chunk(conn, b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        chunk(conn, b"data: [DONE]\n\n")
        conn.sendall(b"0\r\n\r\n")


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", PORT))
server.listen(256)
while True:
    c, _ = server.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
