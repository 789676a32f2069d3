"""What the head and the Pis agree on: AMQP names (:mod:`.topology`), the
message format (:mod:`.wire`), and connections (:mod:`.amqp`, :mod:`.link`).
Imported by both sides; imports neither."""
