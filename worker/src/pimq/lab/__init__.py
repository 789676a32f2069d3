"""The classic RabbitMQ lab verbs (``pimq send``, ``receive``, ``lab-worker``,
...), confined to the student's own vhost. Runs on the head or a buddy Pi."""
