"""MkDocs hooks (mkdocs.yml ``hooks:``): add what scripts/docs.sh generates to the site.

Doxygen's HTML (build/docs/doxygen/html) is published under ``cpp-api/`` and the diagrams that
Graphviz drew from docs/diagrams/*.dot (build/docs/diagrams) under ``diagrams/``. Adding them as
site files, rather than copying them in after the build, lets ``mkdocs build --strict`` check
every link to them like any other link.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {
    ROOT / "build" / "docs" / "doxygen" / "html": "cpp-api",
    ROOT / "build" / "docs" / "diagrams": "diagrams",
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every generated file; a missing directory is an error (run scripts/docs.sh)."""
    for source, destination in GENERATED.items():
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is missing: build the site with scripts/docs.sh")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = f"{destination}/{path.relative_to(source).as_posix()}"
            files.append(File.generated(config, relative, abs_src_path=str(path)))
    return files
