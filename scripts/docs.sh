#!/usr/bin/env bash
# Builds the documentation site into site/ (open site/index.html): the pages in docs/, the Python
# API from the docstrings (mkdocstrings), the C++ API from the header comments (Doxygen), and the
# diagrams in docs/diagrams/*.dot (Graphviz). Warnings are errors: a broken link or anchor, a
# docstring mkdocstrings cannot read, a Doxygen error anywhere, or an undocumented public name in
# the headers of the public C++ API (PUBLIC_HEADERS below) fails the build.
# Installs what it needs first: Debian's doxygen and graphviz (when root, or with sudo), and the
# `docs` extra of pyproject.toml into .venv. Usage: bash scripts/docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The headers of the public API (README's "From C++"): every public name in them must be
# documented. The others are the implementation's internals and still have undocumented names
# (mostly self-explanatory struct members and accessors); those are counted and listed in
# build/docs/doxygen-warnings.txt, not errors. A header joins this list once its gaps are filled.
PUBLIC_HEADERS=(replay_buffer.hpp buffer.hpp schema.hpp dtype.hpp errors.hpp rate_limiter.hpp)

need=()
command -v doxygen >/dev/null || need+=(doxygen)
command -v dot >/dev/null || need+=(graphviz)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Only the docs extra's packages: mkdocstrings reads the sources statically, so the package itself
# (and its C++ build) is not needed to document it.
[[ -x .venv/bin/python ]] || python3 -m venv .venv
mapfile -t requirements < <(.venv/bin/python - <<'PY'
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["docs"]))
PY
)
.venv/bin/python -m pip install -q "${requirements[@]}"

rm -rf build/docs site
mkdir -p build/docs/diagrams
for graph in docs/diagrams/*.dot; do
  dot -Tsvg "$graph" -o "build/docs/diagrams/$(basename "${graph%.dot}").svg"
done

warnings=build/docs/doxygen-warnings.txt
(cat docs/cpp/Doxyfile; echo "WARN_LOGFILE = $warnings") | doxygen - >/dev/null
errors=$(grep -v 'is not documented\.$' "$warnings" || true)
for header in "${PUBLIC_HEADERS[@]}"; do
  errors+=$(grep "/replay_buffer/$header:[0-9]*: warning: .* is not documented\.$" "$warnings" |
    sort -u || true)$'\n'
done
if [[ -n ${errors//$'\n'/} ]]; then
  printf 'Doxygen (docs/cpp/Doxyfile):\n%s\n' "$errors" >&2
  exit 1
fi
echo "C++ API: $(grep 'is not documented' "$warnings" | sort -u | wc -l) undocumented names outside PUBLIC_HEADERS (listed in $warnings)"

# Not --quiet: with it, mkdocs 1.6 drops the warnings before --strict counts them.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict
echo "site built: $PWD/site/index.html"
