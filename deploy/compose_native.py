#!/usr/bin/env python3
"""compose.yaml, started natively: every service as compose would start it, then one order
end to end through the gateway.

Reads compose.yaml (anchors, merge keys and ${VAR} interpolation as compose resolves them,
the variables from a generated .env), then:

- maps the services that are images to what runs on this machine: `postgres` to the
  PostgreSQL on 127.0.0.1:5432 (a fresh database of its own instead of `shop`), `nats` and
  `redis` to the servers on 4222 and 6379, `jaeger` to an OTLP/HTTP receiver in this
  script. Prometheus and Grafana are not started (their configuration is checked by
  deploy/check.sh);
- runs each service built from this repository (`build: .`) as the `shop` binary with the
  service's `command` and `environment`, in `depends_on` order (`migrate` to completion
  first). Container hostnames become 127.0.0.1, each instance listens on a free port
  (SHOP_LISTEN and SHOP_ADVERTISE_URL follow), and every instance gets one
  SHOP_NAMESPACE of this run, so the shared NATS server keeps runs apart;
- as an admin, registers a product through the gateway; as a customer, places an order
  there; waits for the saga to confirm it; completes it as payment; checks the stock was
  deducted; checks that the gateway and both roles exported spans to `jaeger`. Any failure
  exits 1 with the logs of every instance.

    deploy/compose_native.py [--bin DIR]      (default: $CARGO_TARGET_DIR/debug)
"""

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Images this machine runs natively, by compose service name: host:port of each.
NATIVE = {"postgres": "127.0.0.1:5432", "nats": "127.0.0.1:4222", "redis": "127.0.0.1:6379"}
# Images with nothing here to run them as (their configs are checked by deploy/check.sh).
NOT_STARTED = {"prometheus", "grafana"}


class Otlp(BaseHTTPRequestHandler):
    """Jaeger's OTLP/HTTP receiver, as far as this run needs: keeps each export's body."""

    bodies = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            Otlp.bodies.append(body)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def otlp_receiver():
    """An OTLP/HTTP receiver on a free port, serving until the script ends; its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Otlp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"127.0.0.1:{server.server_address[1]}"


def interpolate(text, env):
    """${VAR}, ${VAR:-default}, ${VAR:?message} and $$, as compose resolves them."""

    def one(match):
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            sys.exit(f"compose.yaml needs {name}: {arg}")
        if op == ":-" and not value:
            return arg
        return value

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[?-])([^}]*))?\}", one, text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def order_of_start(services):
    """Services in depends_on order."""
    done, order = set(), []

    def visit(name, path=()):
        if name in done:
            return
        if name in path:
            sys.exit(f"depends_on cycle through {name}")
        for dep in services[name].get("depends_on", {}) or {}:
            visit(dep, path + (name,))
        done.add(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def http(method, url, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
            try:
                return answer.status, json.loads(text or b"null")
            except ValueError:
                return answer.status, text.decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return None, str(error)


def eventually(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {seconds} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    parser.add_argument("--bin", default=os.path.join(target, "debug"))
    shop = os.path.join(parser.parse_args().bin, "shop")

    run = f"{int(time.time())}{secrets.randbelow(10**6):06d}"
    # What an operator puts in .env (see .env.example): fresh secrets each run.
    dotenv = {
        "SHOP_JWT_SECRET": secrets.token_hex(32),
        "SHOP_DATA_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
    }
    with open(os.path.join(ROOT, "compose.yaml")) as f:
        compose = yaml.safe_load(interpolate(f.read(), {**os.environ, **dotenv}))
    services = compose["services"]
    unknown = set(services) - set(NATIVE) - {"jaeger"} - NOT_STARTED - {n for n, s in services.items() if s.get("build")}
    if unknown:
        sys.exit(f"compose.yaml has services this runner cannot map: {sorted(unknown)}")

    database = f"compose_{run}"
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {database}"],
        check=True,
    )
    ports = {name: free_port() for name, s in services.items() if s.get("build")}
    native_here = {**NATIVE, "jaeger": otlp_receiver()}
    hosts = {**native_here, **{name: f"127.0.0.1:{port}" for name, port in ports.items()}}

    def native(value):
        value = str(value)
        for name, address in hosts.items():
            value = re.sub(rf"(?<=[/@]){re.escape(name)}:\d+(?=/|$)", address, value)
        return value.replace("127.0.0.1:5432/shop", f"127.0.0.1:5432/{database}")

    logs = tempfile.mkdtemp(prefix="compose-native-")
    running = {}
    try:
        for name in order_of_start(services):
            service = services[name]
            if name in native_here or name in NOT_STARTED:
                print(f"{name}: {native_here.get(name, 'not started (no native server here)')}")
                continue
            env = {k: native(v) for k, v in (service.get("environment") or {}).items()}
            env["SHOP_LISTEN"] = f"127.0.0.1:{ports[name]}"
            env["SHOP_NAMESPACE"] = f"compose{run}"
            # The shared NATS server reserves a stream's byte limit on creation.
            env["SHOP_STREAM_MAX_BYTES"] = "off"
            command = [shop, *service.get("command", [])]
            log = open(os.path.join(logs, f"{name}.log"), "w")
            process = subprocess.Popen(command, env={"PATH": os.environ["PATH"], **env}, stdout=log, stderr=log)
            if service.get("restart") == "no":
                # A one-shot service (the migrations): others wait for it to succeed.
                if process.wait(timeout=120) != 0:
                    raise RuntimeError(f"{name} exited with {process.returncode}")
                print(f"{name}: completed")
                continue
            running[name] = process
            port = ports[name]
            eventually(f"{name} live", lambda: http("GET", f"http://127.0.0.1:{port}/health/live")[0] == 200)
            print(f"{name}: {' '.join(service.get('command', []))} on 127.0.0.1:{port}")

        gateway = f"http://127.0.0.1:{ports['gateway']}"
        secret_env = {"PATH": os.environ["PATH"], "SHOP_JWT_SECRET": dotenv["SHOP_JWT_SECRET"]}

        def token(sub, role):
            out = subprocess.run([shop, "token", "--sub", sub, "--role", role], env=secret_env, capture_output=True, text=True, check=True)
            return out.stdout.strip()

        admin, alice, payment = token("ops", "admin"), token("alice", "customer"), token("psp", "payment")
        # The gateway finds the instances through their announcements.
        def answered(expected, method, path, caller, body=None, where=lambda body: True):
            """The body of an answer with status `expected` satisfying `where`, else None."""
            status, body = http(method, f"{gateway}{path}", caller, body)
            return body if status == expected and isinstance(body, dict) and where(body) else None

        mug = {"id": "SKU-COMPOSE", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 5}
        eventually("the product registered through the gateway", lambda: answered(201, "POST", "/api/products", admin, mug))
        order = {"items": [{"product_id": "SKU-COMPOSE", "quantity": 2}]}
        placed = eventually(
            "an order accepted (once the order side knows the product)",
            lambda: answered(202, "POST", "/api/orders", alice, order),
        )
        order_id = placed["order_id"]
        confirmed = lambda body: body.get("status") == "CONFIRMED"
        eventually(f"order {order_id} CONFIRMED by the saga", lambda: answered(200, "GET", f"/api/orders/{order_id}", alice, where=confirmed))
        completed = answered(200, "POST", f"/api/orders/{order_id}/complete", payment)
        if not completed or completed.get("status") != "COMPLETED":
            raise RuntimeError(f"completing {order_id}: {completed}")
        deducted = lambda body: body.get("deducted") == 2
        product = eventually("the stock deducted", lambda: answered(200, "GET", "/api/products/SKU-COMPOSE", admin, where=deducted))
        print(f"order {order_id}: accepted, CONFIRMED, COMPLETED through the gateway; stock {product['available']} available, {product['deducted']} deducted")
        # Spans carry their service's name (shop-<role>) in the export's resource.
        exported = lambda: all(any(f"shop-{role}".encode() in body for body in Otlp.bodies) for role in ("gateway", "order", "inventory"))
        eventually("spans exported to jaeger by the gateway and both roles", exported, seconds=30)
        print(f"jaeger: {len(Otlp.bodies)} OTLP trace exports from shop-gateway, shop-order and shop-inventory")
        return 0
    except (RuntimeError, subprocess.SubprocessError, KeyError) as error:
        print(f"compose-native: {error}", file=sys.stderr)
        for name in os.listdir(logs):
            print(f"--- {name}", file=sys.stderr)
            print(open(os.path.join(logs, name)).read()[-4000:], file=sys.stderr)
        return 1
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(
            ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
            check=False,
        )


if __name__ == "__main__":
    sys.exit(main())
