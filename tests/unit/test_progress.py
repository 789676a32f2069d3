from __future__ import annotations

import io

from pimq.client.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    out = FakeTTY()
    bar = Progress(4, out, width=8)
    bar.update(2, force=True)
    assert "[####....] 2/4 shards" in out.getvalue()
    bar.update(4)
    assert "[########] 4/4 shards" in out.getvalue()
    bar.message("hello")
    assert out.getvalue().endswith("hello\n")


def test_no_progress_bar_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress(4, out)
    bar.update(1, force=True)
    bar.clear()
    assert out.getvalue() == ""
