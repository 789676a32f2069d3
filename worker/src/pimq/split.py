"""The job-kind API's splitting helpers under their documented, stable name:
job modules (built-in, the admin's in ``/opt/pimq/jobs/``, and students') use
``from pimq.split import split_file, split_range, ...``. The code lives in
:mod:`pimq.jobs.split`."""

from pimq.jobs.split import (
    WHITESPACE,
    FileSlices,
    split_bytes,
    split_file,
    split_lines,
    split_range,
)

__all__ = ["WHITESPACE", "FileSlices", "split_bytes", "split_file", "split_lines", "split_range"]
