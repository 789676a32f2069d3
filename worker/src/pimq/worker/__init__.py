"""The Pi's side: ``pimq worker`` (``pimq-worker.service``). :mod:`.daemon`
consumes every student vhost on one I/O thread; shards run in forked
processes (:mod:`.pool`, :mod:`.execute`); :mod:`.retry` decides what a
failed shard becomes; :mod:`.pacing` how many shards a vhost holds."""
