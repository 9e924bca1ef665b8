"""What a live session writes to a terminal: strings from a card or a stream are escaped, never obeyed."""

import io

import pytest

from neurodecode.online.display import StatusLine, printable, status_text
from neurodecode.online.lsl import LiveDecision


@pytest.mark.parametrize("text, expected", [
    ("left_hand", "left_hand"),
    ("Main gauche é ü 左", "Main gauche é ü 左"),  # letters of any script are kept
    ("{0}{__class__}%s%(x)s", "{0}{__class__}%s%(x)s"),  # no formatting happens: braces and % stay as they are
    ("a\x1b[2Jb", r"a\x1b[2Jb"),  # clear screen
    ("\x1b]0;owned\x07", r"\x1b]0;owned\x07"),  # set the window title
    ("x\ry\nz\tw", r"x\ry\nz\tw"),
    ("\x7f\x9b", r"\x7f\x9b"),  # DEL and the C1 control sequence introducer
    ("abc\u202edef", r"abc\u202edef"),  # right-to-left override
    ("a\u2028b\u200bc", r"a\u2028b\u200bc"),  # line separator, zero-width space
])
def test_printable_escapes_what_a_terminal_would_obey_and_keeps_the_rest(text, expected):
    assert printable(text) == expected
    assert printable(text).isprintable()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _decision(class_name):
    return LiveDecision(0, 0, 10.0, 1.5, -1.5, 0, class_name, (0.9, 0.1), None, 2.0, 1.0)


def test_the_status_line_escapes_its_text_and_writes_only_its_own_codes():
    screen = _Terminal()
    line = StatusLine(screen)
    line.show(status_text(_decision("left\x1b[2J"), {"n_scored": 0}, dropouts=1))
    line.note("[warning] \x1b[31mred\x1b[0m")
    line.end()
    assert screen.getvalue() == ("\r    1.50 s  #1 left\\x1b[2J (p=0.90)  lag 2.0 ms  | scored 0  | dropouts 1\x1b[K"
                                 "\r\x1b[K[warning] \\x1b[31mred\\x1b[0m\n")


def test_off_a_terminal_the_status_is_a_plain_line_escaped_too():
    out = io.StringIO()
    line = StatusLine(out, every_s=60.0)
    line.show(status_text(_decision("right\r\n")))
    line.show(status_text(_decision("not shown: within every_s")))
    line.note("dropout\n")
    assert out.getvalue() == "    1.50 s  #1 right\\r\\n (p=0.90)  lag 2.0 ms\ndropout\\n\n"
