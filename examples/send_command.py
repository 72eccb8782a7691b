#!/usr/bin/env python3
"""Sends one command to Tern over RabbitMQ and prints the reply (JSON-RPC 2.0, docs/events.md).

    python3 examples/send_command.py location.lookup '{"aor": "sip:alice@example.com"}'

Commands are the management API's methods; the reply comes back on a temporary queue named in
`reply_to`, matched by `correlation_id`.
"""
import argparse
import json
import sys
import uuid

import pika


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method")
    parser.add_argument("params", nargs="?", default="{}", help="a JSON object or array")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--exchange", default="tern.events")
    parser.add_argument("--routing-key", default=None, help="default: command.<method>")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    reply_queue = channel.queue_declare(queue="", exclusive=True).method.queue
    correlation_id = str(uuid.uuid4())
    request = {"jsonrpc": "2.0", "id": correlation_id, "method": args.method, "params": json.loads(args.params)}
    channel.basic_publish(exchange=args.exchange, routing_key=args.routing_key or "command." + args.method,
                          properties=pika.BasicProperties(reply_to=reply_queue, correlation_id=correlation_id,
                                                          content_type="application/json"),
                          body=json.dumps(request))
    for method, properties, body in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=args.timeout):
        if method is None:
            print("no reply within the timeout", file=sys.stderr)
            sys.exit(2)
        if properties.correlation_id == correlation_id:
            reply = json.loads(body)
            print(json.dumps(reply, indent=2))
            sys.exit(1 if "error" in reply else 0)


if __name__ == "__main__":
    main()
