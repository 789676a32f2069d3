"""The head node's side of a job, as the student: ``pimq run`` (:mod:`.run`)
drives a :class:`.controller.Controller` that publishes the shards, gathers
one result per shard and joins them; ``pimq status`` (:mod:`.status`)."""
