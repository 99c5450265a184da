#!/usr/bin/env python3
"""Fail when C++ code calls something Linux- or glibc-only outside a guard.

The project's primary platform is macOS; CI runs on Linux, where glibc declares all of these, so
a compiler cannot tell. This scans the C++ sources (comments removed, string literals kept) for
the names, headers and paths below and reports each one that is not inside a guard:
``#if defined(__linux__)`` (or ``#ifdef __linux__``, or the ``#else`` of
``#if !defined(__linux__)``), one of GUARD_MACROS (macros defined only on Linux), or
``#ifdef NAME`` / ``#if defined(NAME)`` of the very name it uses (a feature test, e.g.
``#ifdef MADV_HUGEPAGE``).

The companion check, a build with ``-U__linux__`` (scripts/test.sh), compiles and tests the code
that the guards leave to other systems.

Usage: python3 scripts/check_portability.py [PATH...]   (default: cpp, python/src, benchmarks)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATHS = ("cpp", "python/src", "benchmarks")
SOURCE_SUFFIXES = {".cpp", ".hpp", ".h", ".cc"}
# Macros that the code defines only on Linux.
GUARD_MACROS = {"__linux__", "__linux", "REPLAY_BUFFER_ROBUST_MUTEX"}

# What macOS lacks (or has with another meaning), and why each one matters.
LINUX_ONLY: dict[str, str] = {
    # memory and files
    "fallocate": "Linux only",
    "posix_fallocate": "not on macOS (fcntl F_PREALLOCATE there)",
    "MAP_POPULATE": "Linux mmap flag",
    "MAP_HUGETLB": "Linux mmap flag",
    "MAP_FIXED_NOREPLACE": "Linux mmap flag",
    "MADV_HUGEPAGE": "Linux madvise advice",
    "MADV_NOHUGEPAGE": "Linux madvise advice",
    "MADV_DONTFORK": "Linux madvise advice",
    "MADV_DONTDUMP": "Linux madvise advice",
    "MADV_REMOVE": "Linux madvise advice",
    "MADV_POPULATE_WRITE": "Linux madvise advice",
    "memfd_create": "Linux only",
    "mremap": "Linux only",
    "O_TMPFILE": "Linux open flag",
    "O_DIRECT": "not on macOS (F_NOCACHE there)",
    "O_NOATIME": "Linux open flag",
    "O_PATH": "Linux open flag",
    "sendfile": "another signature on macOS",
    "splice": "Linux only",
    # processes, threads, locks
    "pthread_mutexattr_setrobust": "no robust mutexes on macOS",
    "pthread_mutex_consistent": "no robust mutexes on macOS",
    "PTHREAD_MUTEX_ROBUST": "no robust mutexes on macOS",
    "set_robust_list": "Linux system call",
    "futex": "Linux system call",
    "syscall": "raw system calls differ per OS",
    "gettid": "Linux only",
    "sched_getcpu": "Linux only",
    "sched_setaffinity": "Linux only",
    "sched_getaffinity": "Linux only",
    "cpu_set_t": "Linux only",
    "prctl": "Linux only",
    "getauxval": "Linux only",
    "clock_nanosleep": "not on macOS",
    "CLOCK_BOOTTIME": "Linux clock",
    "CLOCK_MONOTONIC_COARSE": "Linux clock",
    "CLOCK_REALTIME_COARSE": "Linux clock",
    "pthread_setname_np": "another signature on macOS",
    "pthread_getattr_np": "Linux only",
    "pthread_timedjoin_np": "Linux only",
    "pthread_tryjoin_np": "Linux only",
    "pthread_cond_clockwait": "glibc only",
    "pthread_mutex_clocklock": "glibc only",
    "sysinfo": "Linux only",
    "get_nprocs": "glibc only",
    # sockets and events
    "MSG_NOSIGNAL": "not on macOS (SO_NOSIGPIPE there)",
    "SOCK_CLOEXEC": "not on macOS",
    "SOCK_NONBLOCK": "not on macOS",
    "accept4": "not on macOS",
    "pipe2": "not on macOS",
    "dup3": "not on macOS",
    "epoll_create": "Linux only (kqueue on macOS)",
    "epoll_create1": "Linux only (kqueue on macOS)",
    "epoll_ctl": "Linux only",
    "epoll_wait": "Linux only",
    "eventfd": "Linux only",
    "timerfd_create": "Linux only",
    "signalfd": "Linux only",
    "inotify_init": "Linux only",
    "inotify_init1": "Linux only",
    # glibc extensions
    "malloc_usable_size": "glibc only (malloc_size on macOS)",
    "malloc_trim": "glibc only",
    "mallopt": "glibc only",
    "program_invocation_name": "glibc only",
    "program_invocation_short_name": "glibc only",
    "secure_getenv": "glibc only",
    "strerror_r": "returns char* with _GNU_SOURCE, int on macOS: use strerror or a wrapper",
    "qsort_r": "another argument order on macOS",
    "strchrnul": "glibc only",
    "memrchr": "glibc only",
    "rawmemchr": "glibc only",
    "mempcpy": "glibc only",
    "bswap_16": "<byteswap.h> is glibc only",
    "bswap_32": "<byteswap.h> is glibc only",
    "bswap_64": "<byteswap.h> is glibc only",
    "htole64": "<endian.h> is not on macOS",
    "le64toh": "<endian.h> is not on macOS",
    "htobe64": "<endian.h> is not on macOS",
    "be64toh": "<endian.h> is not on macOS",
}
HEADERS: dict[str, str] = {
    "linux/": "Linux kernel headers",
    "sys/epoll.h": "Linux only",
    "sys/prctl.h": "Linux only",
    "sys/sysinfo.h": "Linux only",
    "sys/vfs.h": "Linux only",
    "sys/statfs.h": "Linux only (sys/mount.h on macOS)",
    "sys/eventfd.h": "Linux only",
    "sys/timerfd.h": "Linux only",
    "sys/signalfd.h": "Linux only",
    "sys/inotify.h": "Linux only",
    "sys/syscall.h": "raw system calls differ per OS",
    "sys/sendfile.h": "Linux only",
    "sys/auxv.h": "Linux only",
    "malloc.h": "not on macOS (malloc/malloc.h)",
    "features.h": "glibc only",
    "endian.h": "not on macOS",
    "byteswap.h": "glibc only",
    "mntent.h": "glibc only",
}
# Paths that exist on Linux only, at the start of a string literal.
PATHS: dict[str, str] = {
    "/proc/": "no procfs on macOS",
    "/dev/shm": "no /dev/shm on macOS",
    "/sys/": "no sysfs on macOS",
    "/run/shm": "Linux only",
}

_IDENTIFIER = re.compile(r"\b(" + "|".join(map(re.escape, LINUX_ONLY)) + r")\b")
_INCLUDE = re.compile(r"#\s*include\s*<(" + "|".join(map(re.escape, HEADERS)) + r")")
_PATH = re.compile(r'"(' + "|".join(map(re.escape, PATHS)) + r")")
_DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
_DEFINED = re.compile(r"(!?)\s*(?:defined\s*\(?\s*(\w+)\s*\)?|(\w+))")


@dataclass(frozen=True)
class Finding:
    """One use of something Linux-only outside a guard."""

    path: Path
    line: int
    what: str
    why: str

    def __str__(self) -> str:
        """``cpp/src/x.cpp:2: NAME outside ...: why``."""
        try:
            shown = self.path.resolve().relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}: {self.what} outside `#if defined(__linux__)`: {self.why}"


def strip_comments(text: str) -> str:
    """Blank the // and /* */ comments of ``text``, keeping line breaks and string literals."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _terms(condition: str) -> tuple[set[str], set[str]]:
    """(names the condition requires, names it requires absent), for && chains only."""
    if "||" in condition:
        return set(), set()
    required: set[str] = set()
    absent: set[str] = set()
    for negated, in_defined, bare in _DEFINED.findall(condition):
        name = in_defined or bare
        if name in {"defined", "", "0", "1"}:
            continue
        (absent if negated else required).add(name)
    return required, absent


def _guarded_by(names: set[str]) -> set[str]:
    """Return what a branch requiring ``names`` guards: all for a Linux macro, else ``names``."""
    return {"*"} if names & GUARD_MACROS else names


def scan(text: str, path: Path = Path("<text>")) -> list[Finding]:
    """Every unguarded use of a Linux-only name, header or path in C++ source ``text``."""
    findings: list[Finding] = []
    # One frame per open #if: (guards of the current branch, guards of its #else).
    stack: list[tuple[set[str], set[str]]] = []
    for number, line in enumerate(strip_comments(text).splitlines(), start=1):
        directive = _DIRECTIVE.match(line)
        if directive:
            kind, rest = directive.group(1), directive.group(2).strip()
            if kind in ("if", "elif"):
                required, absent = _terms(rest)
                current, otherwise = _guarded_by(required), _guarded_by(absent)
                if kind == "if":
                    stack.append((current, otherwise))
                elif stack:
                    stack[-1] = (current, set())
            elif kind == "ifdef":
                stack.append((_guarded_by({rest.split()[0]} if rest else set()), set()))
            elif kind == "ifndef":
                stack.append((set(), _guarded_by({rest.split()[0]} if rest else set())))
            elif kind == "else" and stack:
                stack[-1] = (stack[-1][1], set())
            elif kind == "endif" and stack:
                stack.pop()
        guards = set().union(*(frame[0] for frame in stack)) if stack else set()
        if "*" in guards:
            continue
        for match in _IDENTIFIER.finditer(line):
            if match.group(1) not in guards:
                findings.append(Finding(path, number, match.group(1), LINUX_ONLY[match.group(1)]))
        for match in _INCLUDE.finditer(line):
            findings.append(Finding(path, number, f"<{match.group(1)}>", HEADERS[match.group(1)]))
        for match in _PATH.finditer(line):
            findings.append(Finding(path, number, f'"{match.group(1)}..."', PATHS[match.group(1)]))
    return findings


def sources(paths: list[Path]) -> list[Path]:
    """List the C++ files under ``paths``."""
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        else:
            files += sorted(p for p in path.rglob("*") if p.suffix in SOURCE_SUFFIXES)
    return files


def main(argv: list[str]) -> int:
    """Scan the given paths (or the defaults); print findings; 1 if there are any."""
    paths = [Path(a) for a in argv] or [ROOT / p for p in DEFAULT_PATHS]
    files = sources(paths)
    findings = [f for file in files for f in scan(file.read_text(encoding="utf-8"), file)]
    for finding in findings:
        print(finding)
    print(f"portability: {len(files)} C++ files, {len(findings)} Linux-only uses outside a guard")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
