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


def test_the_line_fits_any_terminal_width() -> None:
    bar = Progress(64, FakeTTY(), width=30)
    for cols in (20, 40, 60, 79, 200):
        line = bar.line(17, 3.25, cols)
        assert len(line) <= cols - 1, (cols, line)
        assert "17/64 shards" in line or cols < 20
    assert bar.line(32, 1.0, 200).startswith("[" + "#" * 15 + "." * 15 + "]")
    assert bar.line(32, 1.0, 30) == "[##...] 32/64 shards    1.0 s"  # a 5-wide bar fits
    assert bar.line(32, 1.0, 25) == "32/64 shards    1.0 s"  # no room for a bar: figures only


def test_each_redraw_returns_and_erases_the_line() -> None:
    out = FakeTTY()
    bar = Progress(2, out)
    bar.update(1, force=True)
    bar.update(2, force=True)
    redraws = out.getvalue().split("\r\x1b[K")
    assert redraws[0] == "" and len(redraws) == 3
    assert all("\n" not in r for r in redraws)
