# On the GPU machine, in the repository root: `source scripts/gpu/unpack-prebuilt.sh` takes the
# binaries of .prebuilt/prebuilt.tar.xz (scripts/gpu/prebuild.sh) into build-gpu/ and prepares
# the environment they run in:
#   - the .gpudeps packages unpacked into /tmp/gpudeps (as run-tests.sh does), LD_LIBRARY_PATH
#     with them and with the machine's CUDA runtime;
#   - the source folder the tests' data paths were compiled with, linked to this tree when the
#     machine has no such folder;
#   - NEMOTRON=build-gpu/nemotron for bench-ab.sh, serve-bench.sh and bench-real.sh.
# Returns 1 (and unpacks nothing) when the archive is missing or was built from another tree
# (tree-stamp.sh), so that a caller can fall back to `run-tests.sh --build-tests`.
# (Sourced, not executed: no `set -e`, no exit.)
_prebuilt_unpack() {
  local root archive stage stamp source
  root="$(pwd)"
  archive="$root/.prebuilt/prebuilt.tar.xz"
  [ -f "$archive" ] || { echo "unpack-prebuilt: no $archive" >&2; return 1; }
  source "$root/scripts/gpu/tree-stamp.sh"
  stage=$(mktemp -d)
  tar xJf "$archive" -C "$stage" || { rm -rf "$stage"; return 1; }
  stamp=$(awk '$1 == "stamp" {print $2}' "$stage/STAMP")
  source=$(awk '$1 == "source" {print $2}' "$stage/STAMP")
  if [ "$stamp" != "$(tree_stamp)" ]; then
    echo "unpack-prebuilt: built from another tree (stamp $stamp, this tree $(tree_stamp)); rebuild with prebuild.sh" >&2
    rm -rf "$stage"
    return 1
  fi
  mkdir -p /tmp/gpudeps
  local f
  for f in "$root"/.gpudeps/*.deb; do
    [ -e "$f" ] || continue  # no .gpudeps: the machine's own libraries
    dpkg -x "$f" /tmp/gpudeps || { rm -rf "$stage"; return 1; }
  done
  local cudart
  cudart=$(ldconfig -p | awk '/libcudart\.so\.13 / {print $NF; exit}')
  [ -n "$cudart" ] || cudart=$(find /usr/local /usr/lib -name 'libcudart.so.13' 2>/dev/null | head -1)
  export LD_LIBRARY_PATH="/tmp/gpudeps/usr/lib/x86_64-linux-gnu${cudart:+:$(dirname "$cudart")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [ -n "$source" ] && [ "$source" != "$root" ] && [ ! -e "$source" ]; then
    mkdir -p "$(dirname "$source")" && ln -s "$root" "$source"
  fi
  (cd "$stage" && find build-gpu -type f) | while read -r f; do
    mkdir -p "$root/$(dirname "$f")" && cp "$stage/$f" "$root/$f"
  done
  rm -rf "$stage"
  export NEMOTRON="$root/build-gpu/nemotron"
  local missing
  missing=$(find "$root/build-gpu" -type f -perm -u+x -exec ldd {} \; 2>/dev/null | grep "not found" | sort -u)
  [ -z "$missing" ] || { echo "unpack-prebuilt: libraries not found: $missing" >&2; return 1; }
  echo "unpack-prebuilt: build-gpu/ from stamp $stamp (source $source)"
}
_prebuilt_unpack
