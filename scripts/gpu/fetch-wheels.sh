#!/usr/bin/env bash
# Downloads (here, on the development machine) the wheels of the GPU Python tests' packages
# (tests/cuda/test_*.py: pytest, requests, the openai client) and of everything they require, at
# the versions installed here (scripts/install-deps.sh --test: those the CPU tests run with),
# for the GPU machine's Python 3.12, into .whl/ (keep it out of git: `echo /.whl/ >>
# .git/info/exclude`). scripts/gpu/run-tests.sh installs them there (pip --no-index --target
# /tmp/site); pass the folder with carry: [".gpudeps", ".whl"].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.whl"
rm -rf "$dest"
mkdir -p "$dest"
# The installed closure of the roots: name==version per line.
pins=$(python3 - pytest requests openai <<'PY'
import sys
from importlib import metadata
from packaging.requirements import Requirement
seen, todo, out = set(), list(sys.argv[1:]), []
while todo:
    name = todo.pop()
    key = name.lower().replace("_", "-")
    if key in seen:
        continue
    seen.add(key)
    dist = metadata.distribution(name)
    out.append(f"{dist.metadata['Name']}=={dist.version}")
    for r in dist.requires or []:
        req = Requirement(r)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        todo.append(req.name)
print("\n".join(sorted(out)))
PY
)
echo "$pins"
platforms=()
for n in 5 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
# shellcheck disable=SC2086  # one requirement per word
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$dest" $pins
ls "$dest" | wc -l
du -sh "$dest"
