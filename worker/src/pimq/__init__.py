"""pimq: sharded jobs over RabbitMQ for a Raspberry Pi classroom."""

__version__ = "0.1.0"
