#!/usr/bin/env bash
# Builds, here on the development machine (no GPU needed: nvcc only), the sm_90a binaries a GPU
# call runs, and packs them into .prebuilt/prebuilt.tar.xz (stripped; xz -9, whose 64 MiB
# window spans the binaries, which share most of their code: ~10 MB, where the tree and
# .gpudeps already take ~50 of the 64 MiB a call may carry) so that the call spends its device
# time measuring instead of building. Pass the folder to `run` with
# carry: [".gpudeps", ".prebuilt"]; on the GPU machine `source scripts/gpu/unpack-prebuilt.sh`
# puts them where the other scripts look (build-gpu/...).
#   bash scripts/gpu/prebuild.sh [extra targets...]
# Default targets: nemotron, nemotron_cuda_tests, bench_gemv_cuda, bench_mamba_cuda. The build
# folder is build-prebuilt/ (JOBS: build parallelism, default all cores). The archive's STAMP
# names the source it was built from (tree-stamp.sh: the sources and any uncommitted change
# under src/ tests/ bench/ and the CMake files) and the source folder the tests' data paths
# were compiled with; unpack-prebuilt.sh refuses binaries whose stamp differs from its tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/gpu/tree-stamp.sh
bdir=build-prebuilt
targets=(nemotron nemotron_cuda_tests bench_gemv_cuda bench_mamba_cuda "$@")
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEMOTRON_CUDA=ON -DNEMOTRON_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a > /dev/null
cmake --build "$bdir" -j"${JOBS:-$(nproc)}" --target "${targets[@]}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for t in "${targets[@]}"; do
  f=$(find "$bdir" -type f -name "$t" -perm -u+x | awk '{print length, $0}' | sort -n | head -1 | cut -d' ' -f2-)
  [ -n "$f" ] || { echo "prebuild: no binary for target $t" >&2; exit 1; }
  rel="build-gpu/${f#"$bdir"/}"
  mkdir -p "$stage/$(dirname "$rel")"
  strip -o "$stage/$rel" "$f"
done
{ echo "stamp $(tree_stamp)"; echo "source $root"; echo "targets ${targets[*]}"; } > "$stage/STAMP"
mkdir -p .prebuilt
tar cf - -C "$stage" . | xz -9 -T1 > .prebuilt/prebuilt.tar.xz
cat "$stage/STAMP"
ls -l .prebuilt/prebuilt.tar.xz
