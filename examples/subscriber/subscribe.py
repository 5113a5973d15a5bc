#!/usr/bin/env python3
"""A subscriber outside Rust: prints a shop's events, each checked against
the schema the shop publishes for it.

    pip install nats-py jsonschema
    python3 subscribe.py --shop http://127.0.0.1:8080 --nats nats://127.0.0.1:4222

It reads the event catalogue (AsyncAPI 3.0) from the shop's /asyncapi.json,
subscribes to the subjects of the order and inventory streams (plain NATS:
it sees events as they are published, keeping no position), and validates
each message against the payload schema of components.messages.<event_type>
(<event_type>V<n> for schema version n > 1, e.g. OrderCancelledV2). With
--expect NAMES it exits 0 once it has seen a valid message of each name (1 on
a timeout), and 1 at once on an invalid one.
"""

import argparse
import asyncio
import json
import sys
import urllib.request

import jsonschema
import nats


def catalogue(shop):
    with urllib.request.urlopen(f"{shop}/asyncapi.json", timeout=10) as answer:
        return json.load(answer)


def validators(document):
    """A validator per event type, with the whole document as the root so
    that every $ref into its components resolves."""
    checks = {}
    for name, message in document["components"]["messages"].items():
        schema = dict(document, **message["payload"])
        checks[name] = jsonschema.Draft202012Validator(schema)
    return checks


def subjects(document):
    """The subject tree of each stream the shop publishes to: an event's
    channel address is <namespace>.<context>.<EventType>[.v<n>], and
    <namespace>.<context>.> holds the whole stream."""
    channels = document["channels"].values()
    return sorted({".".join(c["address"].split(".")[:2]) + ".>" for c in channels})


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shop", default="http://127.0.0.1:8080")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--expect", default="", help="event types to wait for, comma-separated")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    document = catalogue(args.shop)
    checks = validators(document)
    expected = {t for t in args.expect.split(",") if t}
    seen = set()
    done = asyncio.get_running_loop().create_future()

    async def handle(message):
        event = json.loads(message.data)
        kind = event.get("event_type")
        version = event.get("schema_version")
        # A later version's message is named with it: OrderCancelledV2.
        name = kind if version == 1 else f"{kind}V{version}"
        check = checks.get(name)
        errors = [] if check else [f"{name!r} is not in the catalogue"]
        if check:
            errors = [f"{e.message} at /{'/'.join(map(str, e.absolute_path))}" for e in check.iter_errors(event)]
        if errors:
            print(f"INVALID {message.subject}: {'; '.join(errors)}", flush=True)
            if not done.done():
                done.set_result(1)
            return
        print(f"{message.subject} {kind} {event['aggregate_id']} v{event['aggregate_version']} {json.dumps(event['payload'])}", flush=True)
        seen.add(name)
        if expected and expected <= seen and not done.done():
            done.set_result(0)

    connection = await nats.connect(args.nats)
    for subject in subjects(document):
        await connection.subscribe(subject, cb=handle)
    await connection.flush()
    print(f"listening on {', '.join(subjects(document))}", flush=True)
    try:
        status = await asyncio.wait_for(done, args.timeout) if expected else await asyncio.Future()
    except asyncio.TimeoutError:
        print(f"timed out; still waiting for {sorted(expected - seen)}", flush=True)
        status = 1
    await connection.close()
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
