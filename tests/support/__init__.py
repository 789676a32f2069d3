"""Test support shared by the suites and the benchmarks: a private broker,
the simulated classroom's nodes, helpers. Found through pytest's
``pythonpath`` (``pytest.ini``) and ``PYTHONPATH=tests`` for bench/."""
