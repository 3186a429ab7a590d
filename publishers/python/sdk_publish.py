#!/usr/bin/env python3
"""Publish CloudEvents from a JSON Lines file to RabbitMQ with the official
CloudEvents Python SDK's RabbitMQ binding, in structured, binary or
alternating content mode.

Each input line is one CloudEvent in structured JSON form (like
schemas/examples/*.json, or what `audrey-reporting export` writes). The SDK
reads it (cloudevents.core.formats.json.JSONFormat) and turns it into a
RabbitMQ message (cloudevents.core.bindings.rabbitmq: to_structured_event or
to_binary_event); pika publishes it to --exchange with routing key = the
event's `type`, persistent (delivery_mode 2), mandatory, on a channel in
publisher-confirm mode: each publish returns only once the broker has
confirmed it. A line the SDK refuses, a nack, an unroutable message (no
queue bound for its type), a missing exchange or a lost connection stop the
run with exit code 1; exit code 0 means every event was confirmed. A JSON
summary goes to standard output.

What the SDK puts on the wire:
  structured: content_type application/cloudevents+json, no headers, the
              body the whole event (re-serialized by the SDK)
  binary:     content_type = the event's datacontenttype (absent when the
              event has none), every other attribute (extensions such as
              `deployment` included) a string header `ce-<attribute>`
              (`ce-time` RFC 3339, to the microsecond at most), the body
              the event's data as JSON

usage:
  sdk_publish.py events.jsonl [--mode structured|binary|alternate]
      [--url amqp://guest:guest@127.0.0.1:5672/%2F] [--exchange audrey.events]
      [--declare] [-q]

Requirements: requirements.txt beside this file (cloudevents>=2.1,<3, pika).
"""
import argparse
import json
import sys
import time

try:
    import pika
    from pika.exceptions import AMQPError, NackError, UnroutableError

    from cloudevents.core.bindings import rabbitmq
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(
        f"sdk_publish.py: {e}; install the requirements with "
        "`python3 -m pip install -r publishers/python/requirements.txt`"
    )

FORMAT = JSONFormat()
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def to_message(event: "CloudEvent", binary: bool) -> "rabbitmq.RabbitMQMessage":
    """The SDK's RabbitMQ message for `event`, in the content mode asked for."""
    if binary:
        return rabbitmq.to_binary_event(event, FORMAT)
    return rabbitmq.to_structured_event(event, FORMAT)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit code: 0 when every event was confirmed by the broker, "
        "1 otherwise, 2 on bad arguments.",
    )
    ap.add_argument("file", help="JSON Lines file of structured CloudEvents ('-' reads standard input)")
    ap.add_argument(
        "--mode",
        choices=["structured", "binary", "alternate"],
        default="structured",
        help="content mode; alternate: the first event structured, the second binary, and so on (default: structured)",
    )
    ap.add_argument("--url", default=DEFAULT_URL, help="AMQP URL, vhost URL-encoded (default: %(default)s)")
    ap.add_argument("--exchange", default="audrey.events", help="topic exchange (default: %(default)s)")
    ap.add_argument(
        "--declare",
        action="store_true",
        help="declare the exchange (durable topic, as audrey-reporting does) instead of only checking it exists",
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines on standard error")
    return ap.parse_args(argv)


def fail(message: str) -> int:
    print(f"sdk_publish.py: {message}", file=sys.stderr)
    return 1


def publish(args, source) -> int:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(args.url))
    except AMQPError as e:
        return fail(f"cannot connect to the broker: {e!r}")
    counts = {"structured": 0, "binary": 0}
    started = time.monotonic()
    published = 0
    try:
        channel = connection.channel()
        try:
            channel.exchange_declare(args.exchange, "topic", durable=True, passive=not args.declare)
        except AMQPError as e:
            return fail(f"exchange {args.exchange}: {e!r}")
        channel.confirm_delivery()
        for lineno, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                # The SDK's JSON event format: checks the required attributes
                # and reads `time` into an aware datetime.
                event = FORMAT.read(CloudEvent, line.encode("utf-8"))
            except (BaseCloudEventException, ValueError, TypeError) as e:
                return fail(f"line {lineno}: not a CloudEvent the SDK accepts: {e}")
            binary = args.mode == "binary" or (args.mode == "alternate" and published % 2 == 1)
            message = to_message(event, binary)
            properties = pika.BasicProperties(
                content_type=message.content_type,
                headers=message.headers or None,
                delivery_mode=pika.DeliveryMode.Persistent,
            )
            try:
                # In confirm mode this returns once the broker acked it.
                channel.basic_publish(
                    args.exchange, event.get_type(), message.body, properties, mandatory=True
                )
            except UnroutableError:
                return fail(
                    f"line {lineno}: unroutable: no queue is bound to {args.exchange} for "
                    f"{event.get_type()} (is audrey-reporting running? it declares its queue)"
                )
            except NackError:
                return fail(f"line {lineno}: the broker refused (nack) the event")
            counts["binary" if binary else "structured"] += 1
            published += 1
            if not args.quiet and published % 1000 == 0:
                print(f"{published} confirmed", file=sys.stderr)
    except AMQPError as e:
        return fail(f"after {published} confirmed event(s): {e!r}")
    finally:
        try:
            if connection.is_open:
                connection.close()
        except AMQPError:
            pass
    print(
        json.dumps(
            {
                "published": published,
                **counts,
                "mode": args.mode,
                "exchange": args.exchange,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.file == "-":
        return publish(args, sys.stdin)
    try:
        source = open(args.file, encoding="utf-8")
    except OSError as e:
        return fail(f"cannot read {args.file}: {e.strerror}")
    with source:
        return publish(args, source)


if __name__ == "__main__":
    sys.exit(main())
