"""scripts/check_portability.py finds Linux-only calls outside guards, and only those."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "check_portability", ROOT / "scripts" / "check_portability.py"
)
check = importlib.util.module_from_spec(_spec)
sys.modules["check_portability"] = check
_spec.loader.exec_module(check)


def found(source: str) -> list[str]:
    return [f.what for f in check.scan(source)]


@pytest.mark.parametrize(
    "source",
    [
        "void f(int fd) { fallocate(fd, 0, 0, 4096); }",
        "#if defined(__linux__)\n#else\nvoid f(int fd) { fallocate(fd, 0, 0, 1); }\n#endif",
        "#if !defined(__linux__)\nvoid f(int fd) { fallocate(fd, 0, 0, 1); }\n#endif",
        "#if defined(__linux__) || defined(__APPLE__)\nint x = fallocate;\n#endif",
        "#ifdef MAP_HUGETLB\nint flags = MAP_HUGETLB | fallocate;\n#endif",
        "#ifndef __linux__\nint x = fallocate;\n#endif",
    ],
)
def test_unguarded_linux_calls_are_found(source: str) -> None:
    assert found(source) == ["fallocate"]


@pytest.mark.parametrize(
    "source",
    [
        "#if defined(__linux__)\nvoid f(int fd) { fallocate(fd, 0, 0, 1); }\n#endif",
        "#ifdef __linux__\n#if 1\nint x = fallocate;\n#endif\n#endif",
        "#if defined(__linux__) && defined(FOO)\nint x = fallocate;\n#endif",
        "#if !defined(__linux__)\nint y;\n#else\nint x = fallocate;\n#endif",
        "#if REPLAY_BUFFER_ROBUST_MUTEX\nint x = pthread_mutex_consistent(m);\n#endif",
        "#ifdef MADV_HUGEPAGE\n  ::madvise(base, bytes, MADV_HUGEPAGE);\n#endif",
        "// fallocate would be faster, MAP_POPULATE too\n/* and /proc/self/stat\n fallocate */",
        'throw std::runtime_error("cannot list /dev/shm: no such directory");',
        "int my_fallocate_count = 0; int fallocated = 1;",
    ],
)
def test_guarded_or_mentioned_only_is_fine(source: str) -> None:
    assert found(source) == []


def test_headers_and_paths_are_found() -> None:
    source = '#include <sys/epoll.h>\n#include <sys/mman.h>\nauto p = "/proc/self/stat";\n'
    assert found(source) == ["<sys/epoll.h>", '"/proc/..."']


def test_findings_name_file_line_and_reason() -> None:
    [finding] = check.scan("int a;\nint b = MSG_NOSIGNAL;\n", ROOT / "cpp" / "src" / "x.cpp")
    assert str(finding) == (
        "cpp/src/x.cpp:2: MSG_NOSIGNAL outside `#if defined(__linux__)`: "
        "not on macOS (SO_NOSIGPIPE there)"
    )


def test_the_repository_calls_nothing_linux_only_unguarded() -> None:
    files = check.sources([ROOT / p for p in check.DEFAULT_PATHS])
    assert len(files) > 20
    findings = [str(f) for file in files for f in check.scan(file.read_text(), file)]
    assert findings == []
