"""The teacher's page: the room on one page (``pimq-page.service`` on the head).

* :mod:`pimq.page.prometheus` asks the room's Prometheus (HTTPS, the room
  CA, basic auth) and :mod:`pimq.page.figures` turns its answers into what
  the page shows (pure functions, unit-tested);
* :mod:`pimq.page.records` keeps the teacher's record of the class's jobs
  (:mod:`pimq.client.record`): a consumer of ``pimq.record`` on the head
  broker and the last records in the service's state directory;
* :mod:`pimq.page.app` is the Flask app (served by Debian's gunicorn), its
  login (the admin and the inventory's ``pimq_teachers`` only) and its
  templates.

Nothing here imports Flask but :mod:`pimq.page.app`.
"""
