"""The fenced code blocks of README.md and docs/*.md, with the HTML comments that annotate them.

A block may be preceded by one HTML comment (only blank lines between) that the rendered page
does not show:

- ``<!-- not-tested: REASON -->``: the block is not run; the test lists it as skipped, with REASON.
- ``<!-- setup: CODE -->``: CODE runs just before the block, hidden from the reader (Python for
  Python, bash and console blocks; C++ for a C++ block). It defines what an illustrative fragment
  leaves to the reader, such as a network's TD errors.
- ``<!-- file: NAME -->``: the block's text is written to NAME in the working directory, for a
  later command to read (a config file).

Run as ``python doc_blocks.py cpp README.md`` it prints the document's C++ blocks as one program
(its ``#include`` lines first, everything else in ``main``), which scripts/cmake_consumer.sh
compiles against the installed library.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVES = ("not-tested", "setup", "file")
_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(?P<name>[\w-]+):(?P<argument>.*?)-->$", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its text, and its annotation if any."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str  # "" for a block without a language
    code: str
    directive: str | None = None  # one of DIRECTIVES
    argument: str = ""  # the reason, the setup code or the file name

    @property
    def where(self) -> str:
        """``docs/service.md:42``: the path relative to the repository and the line."""
        try:
            shown = self.path.resolve().relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}"


def _annotation(lines: list[str], fence: int, path: Path) -> tuple[str | None, str]:
    """The directive of the HTML comment that ends just above line index ``fence``, if any."""
    end = fence - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None, ""
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None, ""
    comment = "\n".join(lines[start : end + 1]).strip()
    match = _DIRECTIVE.match(comment)
    if match is None:
        return None, ""
    name = match["name"]
    if name not in DIRECTIVES:
        raise ValueError(
            f"{path}:{start + 1}: unknown annotation {name!r}; expected one of {DIRECTIVES}"
        )
    argument = match["argument"]
    # Setup code keeps its indentation relative to its first line; reasons and names are one line.
    argument = _dedent(argument) if name == "setup" else " ".join(argument.split())
    return name, argument


def _dedent(text: str) -> str:
    """Code that starts on the ``setup:`` line or below it, without the comment's indentation."""
    first, _, rest = text.partition("\n")
    return (first.strip() + "\n" + textwrap.dedent(rest)).strip() + "\n"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: code block never closed")
        directive, argument = _annotation(lines, i, path)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, opening["lang"], code, directive, argument))
        i = end + 1
    return found


def cpp_program(path: Path) -> str:
    """The C++ blocks of ``path`` (with their setup code) as one program."""
    includes: list[str] = []
    body: list[str] = []
    for block in blocks(path):
        if block.lang != "cpp" or block.directive == "not-tested":
            continue
        body.append(f"  // {block.where}")
        if block.directive == "setup":
            body += ["  " + line for line in block.argument.splitlines()]
        for line in block.code.splitlines():
            (includes if line.startswith("#include") else body).append(
                line if line.startswith("#include") else "  " + line
            )
    return "\n".join(
        [f"// Generated from {path.name} by python/tests/doc_blocks.py: do not edit.", *includes]
        + ["", "int main() {", *body, "  return 0;", "}", ""]
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "cpp":
        sys.exit("usage: python doc_blocks.py cpp DOCUMENT.md")
    sys.stdout.write(cpp_program(Path(sys.argv[2])))
