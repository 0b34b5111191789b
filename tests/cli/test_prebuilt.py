"""scripts/gpu/unpack-prebuilt.sh and tree-stamp.sh (binaries built off the GPU machine by
prebuild.sh), on a throw-away git repository with stand-in binaries: an archive whose stamp
matches the tree is unpacked into build-gpu/ (executable, NEMOTRON set, the compiled-in source
folder linked to the tree); an uncommitted or committed edit of the sources makes it refuse the
archive and unpack nothing; a change outside the sources (docs, scripts, a Python test, a
lost executable bit) keeps it valid; a missing archive is refused."""
import os
import shutil
import subprocess
import tarfile

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPTS = ["tree-stamp.sh", "unpack-prebuilt.sh"]


def sh(repo, script, check=True):
    return subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True, timeout=60, check=check)


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    for d in ["src/kernels", "tests/cli", "bench", "scripts/gpu"]:
        (r / d).mkdir(parents=True)
    (r / "src/kernels/k.cu").write_text("// kernel\n")
    (r / "tests/cli/test_x.py").write_text("# test\n")
    (r / "bench/RESULTS.md").write_text("# results\n")
    (r / "bench/b.cpp").write_text("// bench\n")
    (r / "CMakeLists.txt").write_text("# cmake\n")
    (r / "README.md").write_text("# readme\n")
    for s in SCRIPTS:
        shutil.copy(os.path.join(ROOT, "scripts", "gpu", s), r / "scripts/gpu" / s)
    git(r, "init", "-q")
    git(r, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(r, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return r


def stamp(repo):
    return sh(repo, "source scripts/gpu/tree-stamp.sh; tree_stamp").stdout.strip()


def make_archive(repo, tmp_path, the_stamp, source):
    stage = tmp_path / "stage"
    (stage / "build-gpu/tests").mkdir(parents=True)
    for rel in ["build-gpu/nemotron", "build-gpu/tests/nemotron_cuda_tests"]:
        (stage / rel).write_text("#!/bin/sh\necho " + os.path.basename(rel) + "\n")
        (stage / rel).chmod(0o755)
    (stage / "STAMP").write_text(f"stamp {the_stamp}\nsource {source}\ntargets nemotron nemotron_cuda_tests\n")
    (repo / ".prebuilt").mkdir(exist_ok=True)
    with tarfile.open(repo / ".prebuilt/prebuilt.tar.xz", "w:xz") as tar:
        for rel in ["STAMP", "build-gpu"]:
            tar.add(stage / rel, arcname="./" + rel)


UNPACK = 'source scripts/gpu/unpack-prebuilt.sh; echo "rc=$?"; echo "NEMOTRON=${NEMOTRON:-}"'


def test_matching_archive_is_unpacked_and_set_up(repo, tmp_path):
    source = tmp_path / "elsewhere" / "main"  # where the binaries were built: absent here
    make_archive(repo, tmp_path, stamp(repo), source)
    out = sh(repo, UNPACK).stdout
    assert "rc=0" in out
    assert f"NEMOTRON={repo}/build-gpu/nemotron" in out
    for rel in ["build-gpu/nemotron", "build-gpu/tests/nemotron_cuda_tests"]:
        assert os.access(repo / rel, os.X_OK), rel
    assert subprocess.run([str(repo / "build-gpu/nemotron")], capture_output=True, text=True).stdout == "nemotron\n"
    assert os.path.islink(source) and os.path.realpath(source) == os.path.realpath(repo)


@pytest.mark.parametrize("commit", [False, True])
def test_edited_sources_refuse_the_archive(repo, tmp_path, commit):
    make_archive(repo, tmp_path, stamp(repo), tmp_path / "src-root")
    (repo / "src/kernels/k.cu").write_text("// kernel, edited\n")
    if commit:
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "edit")
    res = sh(repo, UNPACK)
    assert "rc=1" in res.stdout
    assert "built from another tree" in res.stderr
    assert not (repo / "build-gpu").exists()


def test_changes_outside_the_sources_keep_the_archive(repo, tmp_path):
    before = stamp(repo)
    (repo / "README.md").write_text("# readme, edited\n")
    (repo / "bench/RESULTS.md").write_text("# results, edited\n")
    (repo / "tests/cli/test_x.py").write_text("# test, edited\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "docs")
    (repo / "bench/b.cpp").chmod(0o755)  # a copy of the tree that gained an executable bit
    assert stamp(repo) == before
    (repo / "bench/b.cpp").write_text("// bench, edited\n")
    assert stamp(repo) != before


def test_missing_archive_is_refused(repo):
    res = sh(repo, UNPACK)
    assert "rc=1" in res.stdout
    assert "no " in res.stderr and "prebuilt.tar.xz" in res.stderr
