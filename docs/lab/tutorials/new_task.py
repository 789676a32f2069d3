#!/usr/bin/env python3
"""Tutorial 2, "Work queues": put a task on the durable queue 'task_queue'.

Each dot in the message is one second of work for a worker."""

import sys

import pika

import pimq

connection = pika.BlockingConnection(pimq.parameters())
channel = connection.channel()

channel.queue_declare(queue="task_queue", durable=True)

message = " ".join(sys.argv[1:]) or "Hello World!"
channel.basic_publish(
    exchange="",
    routing_key="task_queue",
    body=message,
    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
)
print(f" [x] Sent {message}")
connection.close()
