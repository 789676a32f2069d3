"""Student code in an OS sandbox: the frames both sides speak (:mod:`.frames`),
the worker's client (:mod:`.client`) and the program that runs inside
``pimq-sandbox@.service`` (:mod:`.runner`, standalone: the worker never imports it)."""
