#!/usr/bin/env bash
# Whether CUDA source files compile to the same machine code at REV and in the working tree:
# a refactor of device code (shared functions, renamed locals) that leaves every kernel's
# code byte for byte as it was needs no GPU A/B. Compiles each file twice to a cubin (REV from a
# temporary git worktree) with the flags of build/compile_commands.json (else the project's
# usual ones), and compares the .text section of every kernel (no disassembler needed).
#   bash scripts/kernel-code-diff.sh [-r REV] [-a ARCH] FILE.cu [FILE.cu ...]
# REV default HEAD, ARCH default sm_90a. Exits 1 when a kernel's code differs (listed), 0 when
# all are identical. Needs nvcc and python3 with pyelftools (pip install pyelftools).
set -euo pipefail
rev=HEAD arch=sm_90a
while getopts "r:a:" o; do case $o in r) rev=$OPTARG ;; a) arch=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: kernel-code-diff.sh [-r REV] [-a ARCH] FILE.cu ..." >&2; exit 2; }
root=$(git rev-parse --show-toplevel)
cd "$root"
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" > /dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/old" "$rev" > /dev/null 2>&1
flags=(-O3 -DNDEBUG -DNEMOTRON_HAVE_CUDA=1 -lineinfo --expt-relaxed-constexpr -std=c++17)
status=0
for f in "$@"; do
  nvcc "${flags[@]}" -arch="$arch" -I"$tmp/old/src" -cubin "$tmp/old/$f" -o "$tmp/old.cubin"
  nvcc "${flags[@]}" -arch="$arch" -Isrc -cubin "$f" -o "$tmp/new.cubin"
  python3 - "$tmp/old.cubin" "$tmp/new.cubin" "$f" <<'PY' || status=1
import re, sys
from elftools.elf.elffile import ELFFile
# Anonymous namespaces are mangled with a hash of the file's path: the same kernel compiled from
# the worktree and from the tree has two names, made one here.
anon = re.compile(r'_GLOBAL__N__[0-9a-f]+_[0-9]+_\w+?_[0-9a-f]{8}')
def kernels(path):
    with open(path, 'rb') as fh:
        return {anon.sub('_GLOBAL__N_', s.name[len('.text.'):]): s.data()
                for s in ELFFile(fh).iter_sections() if s.name.startswith('.text.')}
old, new, name = kernels(sys.argv[1]), kernels(sys.argv[2]), sys.argv[3]
changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
gone, added = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
print(f"{name}: {len(old)} kernels before, {len(new)} after; {len(changed)} changed, {len(gone)} gone, {len(added)} new")
def differing(a, b):  # 16-byte instructions (sm_70 and later) that differ, when the sizes match
    return sum(a[i:i + 16] != b[i:i + 16] for i in range(0, len(a), 16)) if len(a) == len(b) else None
for k in changed:
    d = differing(old[k], new[k])
    print(f"  changed {k} ({len(old[k])} -> {len(new[k])} bytes" +
          (f"; {d} of {len(old[k]) // 16} instructions differ)" if d is not None else ")"))
# A kernel renamed (a template parameter added) whose code is unchanged counts as unchanged.
renamed = {k: next((n for n in added if new[n] == old[k]), None) for k in gone}
for k in gone:
    print(f"  renamed {k}\n       -> {renamed[k]} (same code)" if renamed[k] else f"  gone {k}")
for k in added:
    if k not in renamed.values(): print(f"  new {k}")
sys.exit(1 if changed or any(v is None for v in renamed.values()) else 0)
PY
done
exit $status
