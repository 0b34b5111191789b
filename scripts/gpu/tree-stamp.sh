# Sourced by prebuild.sh and unpack-prebuilt.sh. tree_stamp prints a hash of the sources the
# binaries are built from: the index's blobs under the folders and files that go into them,
# plus any unstaged change there, so that a binary built from an edited tree is never taken
# for another's, and a commit that touches none of them (scripts, docs) keeps it valid.
tree_stamp() {
  local paths=(src tests bench CMakeLists.txt cmake ':(exclude)*.md' ':(exclude)*.py')
  # core.fileMode off: a copy of the tree that lost or gained executable bits is the same source.
  { git ls-files -s -- "${paths[@]}"; git -c core.fileMode=false diff -- "${paths[@]}" 2>/dev/null; } |
    sha1sum | cut -c1-16
}
