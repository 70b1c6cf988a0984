"""Render numpydoc ``Returns`` sections the scanpy way.

Napoleon turns every ``name : type`` line of a ``Returns`` section into a bold name, which cannot hold
markup, so entries like ```adata.obsm['X_' + key_added]` : ndarray`` would show their backticks. This
extension keeps the section's text as the body of the ``:returns:`` field instead: prose stays prose and
an entry followed by an indented description becomes a reST definition list (term, `` : `` classifier,
definition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sphinx.ext.napoleon import NumpyDocstring

if TYPE_CHECKING:
    from sphinx.application import Sphinx


def _parse_returns_section(self: NumpyDocstring, section: str) -> list[str]:
    lines = self._dedent(self._consume_to_next_section())
    if lines and lines[0] == ":":
        del lines[0]
    lines = self._strip_empty(lines)
    if not lines:
        return []
    out = self._format_block(":returns: ", lines)
    if out[-1]:
        out.append("")
    return out


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the ``Returns`` parser."""
    NumpyDocstring._parse_returns_section = _parse_returns_section
    return {"parallel_read_safe": True, "parallel_write_safe": True}
