"""The code blocks of README.md, by section: read by ``tests/test_readme.py`` and by ``.ci/run``.

``python tests/_readme.py "Run the tests"`` prints the one shell command of that section, so that CI runs the
README's command as written rather than a copy of it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def blocks(text: str | None = None) -> list[tuple[str, str, str]]:
    """``(section heading, language, code)`` of every fenced block, in order; the heading is the last ``##`` one."""
    text = README.read_text() if text is None else text
    out = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        out.append((headings[-1].strip() if headings else "", match.group(1), match.group(2)))
    return out


def command(section: str, text: str | None = None) -> str:
    """The one shell command (one line) of the section whose heading starts with ``section``."""
    found = [code for head, lang, code in blocks(text) if head.startswith(section) and lang in ("bash", "sh")]
    if len(found) != 1 or len(found[0].strip().splitlines()) != 1:
        msg = f"README.md: expected one one-line bash block under '## {section}', found {found!r}"
        raise ValueError(msg)
    return found[0].strip()


if __name__ == "__main__":
    sys.stdout.write(command(sys.argv[1]) + "\n")
