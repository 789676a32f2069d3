#!/usr/bin/env python3
"""Tutorial 1, "Hello World!": send one message to the queue 'hello'."""

import pika

import pimq

connection = pika.BlockingConnection(pimq.parameters())
channel = connection.channel()

channel.queue_declare(queue="hello", durable=True)  # RabbitMQ 4 deprecates transient queues

channel.basic_publish(exchange="", routing_key="hello", body="Hello World!")
print(" [x] Sent 'Hello World!'")
connection.close()
