"""The benchmarks' view of JetStream, through its API over the NATS
protocol on 127.0.0.1:4222 (no client library needed):

    python3 bench/jetstream.py sizes NS      # messages and KiB of NS's streams
    python3 bench/jetstream.py drop NS...    # deletes every stream of each NS

Each stream a shop creates reserves its retention's bytes (1 GiB by
default) from the server's storage, and a reservation outlives the run
that made it: after some thirty runs left behind, the server refuses new
streams. So the scripts drop their namespaces' streams when they end.
"""

import json
import socket
import sys


class JetStream:
    def __init__(self, host="127.0.0.1", port=4222):
        self.socket = socket.create_connection((host, port), timeout=10)
        self.file = self.socket.makefile("rb")
        self.file.readline()  # INFO
        self.socket.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.bench 1\r\n')

    def request(self, subject, body=b""):
        self.socket.sendall(f"PUB {subject} _INBOX.bench {len(body)}\r\n".encode() + body + b"\r\n")
        # The answer, past anything else the server sends (its PINGs): a
        # closed connection ends the wait instead of spinning on no lines.
        while not (line := self.file.readline()).startswith(b"MSG"):
            if not line:
                raise ConnectionError(f"NATS closed the connection before answering {subject}")
            if line.startswith(b"PING"):
                self.socket.sendall(b"PONG\r\n")
        return json.loads(self.file.read(int(line.split()[-1]) + 2))

    def stream_names(self):
        names, offset = [], 0
        while True:
            page = self.request("$JS.API.STREAM.NAMES", json.dumps({"offset": offset}).encode())
            names += page.get("streams") or []
            offset += page.get("limit") or 1024
            if offset >= page.get("total", 0):
                return names


def sizes(js, ns):
    out = []
    for name in (f"{ns}_order", f"{ns}_inventory", f"{ns}_dead_letters"):
        state = js.request(f"$JS.API.STREAM.INFO.{name}").get("state", {})
        out.append(f"{name} {state.get('messages', '?')}/{state.get('bytes', 0) // 1024} KiB")
    print(", ".join(out))


def drop(js, namespaces):
    # A namespace's streams, and its key-value buckets' (KV_<ns>_<bucket>).
    prefixes = tuple(p for ns in namespaces for p in (f"{ns}_", f"KV_{ns}_"))
    for name in js.stream_names():
        if name.startswith(prefixes):
            answer = js.request(f"$JS.API.STREAM.DELETE.{name}")
            if not answer.get("success"):
                print(f"could not delete stream {name}: {answer.get('error')}", file=sys.stderr)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "sizes":
        sizes(JetStream(), args[0])
    elif command == "drop":
        if args:
            drop(JetStream(), args)
    else:
        sys.exit(f"unknown command {command}")
