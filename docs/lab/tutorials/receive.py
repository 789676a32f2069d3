#!/usr/bin/env python3
"""Tutorial 1, "Hello World!": print every message of the queue 'hello'."""

import os
import sys

import pika

import pimq


def main():
    connection = pika.BlockingConnection(pimq.parameters())
    channel = connection.channel()

    channel.queue_declare(queue="hello", durable=True)  # RabbitMQ 4 deprecates transient queues

    def callback(ch, method, properties, body):
        print(f" [x] Received {body}")

    channel.basic_consume(queue="hello", on_message_callback=callback, auto_ack=True)

    print(" [*] Waiting for messages. To exit press CTRL+C")
    channel.start_consuming()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted")
        try:
            sys.exit(0)
        except SystemExit:
            os._exit(0)
