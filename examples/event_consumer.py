#!/usr/bin/env python3
"""Prints the events Tern publishes (docs/events.md), one line each.

    pip install pika
    python3 examples/event_consumer.py --url amqp://guest:guest@127.0.0.1:5672/ --binding-key 'registration.#'

A starting point for your own consumer. Delivery is at least once: after a broker or network
failure Tern publishes again what was not confirmed, so the same event can arrive twice. Events
carry an `id`; this consumer remembers the last ids it saw and skips repeats. Each message is
acked after it has been handled, so a consumer that dies mid-way gets it again.
"""
import argparse
import collections
import json
import sys

import pika


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--exchange", default="tern.events")
    parser.add_argument("--binding-key", default="#", help="topic pattern, e.g. 'presence.*' or 'message.#'")
    parser.add_argument("--queue", default="", help="a durable queue name keeps events while the consumer is away; "
                                                    "empty (default) uses a temporary one")
    parser.add_argument("--count", type=int, default=0, help="exit after this many events (0: run until interrupted)")
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    # The same declaration Tern makes, so whichever starts first creates it.
    channel.exchange_declare(exchange=args.exchange, exchange_type="topic", durable=True)
    if args.queue:
        queue = channel.queue_declare(queue=args.queue, durable=True).method.queue
    else:
        queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=args.exchange, routing_key=args.binding_key)
    channel.basic_qos(prefetch_count=100)
    print(f"waiting for events on {args.exchange} ({args.binding_key})", file=sys.stderr, flush=True)

    recent_ids = collections.OrderedDict()
    printed = 0

    def handle(ch, method, properties, body):
        nonlocal printed
        try:
            event = json.loads(body)
        except ValueError:
            print(f"not JSON: {body[:80]!r}", file=sys.stderr, flush=True)
            ch.basic_ack(delivery_tag=method.delivery_tag)
            return
        if event.get("id") in recent_ids:
            ch.basic_ack(delivery_tag=method.delivery_tag)
            return
        recent_ids[event.get("id")] = True
        if len(recent_ids) > 10000:
            recent_ids.popitem(last=False)
        payload = json.dumps(event.get("payload", {}), sort_keys=True)
        print(f"{event.get('time')} {event.get('type')} node={event.get('node')} {payload}", flush=True)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        printed += 1
        if args.count and printed >= args.count:
            ch.stop_consuming()

    channel.basic_consume(queue=queue, on_message_callback=handle)
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        pass
    connection.close()


if __name__ == "__main__":
    main()
