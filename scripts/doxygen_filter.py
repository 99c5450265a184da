r"""Doxygen input filter: reads the headers' plain ``//`` comments as documentation.

The headers document every public name with ``//`` comments (house style), not Doxygen's
``///``. This filter, run by Doxygen on each header (``INPUT_FILTER`` in docs/cpp/Doxyfile),
turns the file's opening comment into its ``\file`` description, a comment line of its own into
``///`` (documenting the declaration below it), and a comment after a member (``int x;  // why``)
into ``///<``. The sources are not changed. Usage: python3 doxygen_filter.py HEADER
"""

from __future__ import annotations

import re
import sys

_OWN_LINE = re.compile(r"^(\s*)//(?![/!])\s?(.*)$")
_AFTER_MEMBER = re.compile(r"^(.*[;,])(\s*)//(?![/!<])\s?(.*)$")


def filtered(lines: list[str]) -> list[str]:
    """Return the header's lines with its ``//`` comments made Doxygen comments (same count)."""
    out: list[str] = []
    opening = True  # still in the comment block that opens the file
    for index, line in enumerate(lines):
        own = _OWN_LINE.match(line)
        if opening and own and index == 0:
            out.append(f"/** \\file */ /// {own[2]}\n")
            continue
        if opening and own:
            out.append(f"/// {own[2]}\n")
            continue
        opening = False
        if own:
            out.append(f"{own[1]}/// {own[2]}\n")
            continue
        member = _AFTER_MEMBER.match(line)
        if member and '"' not in member[1]:
            out.append(f"{member[1]}{member[2]}///< {member[3]}\n")
            continue
        out.append(line if line.endswith("\n") else line + "\n")
    return out


def main() -> None:
    """Print the filtered header named on the command line."""
    with open(sys.argv[1], encoding="utf-8") as header:
        sys.stdout.write("".join(filtered(header.readlines())))


if __name__ == "__main__":
    main()
