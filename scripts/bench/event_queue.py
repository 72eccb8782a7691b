"""The queue an event consumer keeps for the bus benchmark: durable, bound to every routing key of
the exchange, so that each event is stored (persistent delivery) before the broker confirms it.
`bind` declares the exchange as Tern does, and the queue, empty; `delete` removes the queue.
    event_queue.py bind|delete AMQP_URI EXCHANGE QUEUE"""
import sys

import pika

action, uri, exchange, queue = sys.argv[1:5]
connection = pika.BlockingConnection(pika.URLParameters(uri))
channel = connection.channel()
if action == "bind":
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_purge(queue)
    channel.queue_bind(queue, exchange, "#")
else:
    depth = channel.queue_declare(queue, durable=True).method.message_count
    channel.queue_delete(queue)
    print(depth)
connection.close()
