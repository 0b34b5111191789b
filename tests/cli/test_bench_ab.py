"""scripts/gpu/bench-ab.sh (A/B of environment switches in one run), with a stand-in binary
that prints its environment and `nemotron bench`-shaped result rows: each setting runs with its
variables (and only those), the summary keeps the result rows of each, bad settings and a
missing binary are refused, a failed run is reported and makes the script fail."""
import os
import stat
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "gpu", "bench-ab.sh")

FAKE = """#!/usr/bin/env bash
echo "args: $*"
echo "A=${AB_TEST_A:-unset} B=${AB_TEST_B:-unset}"
echo "decode depth mode        tok/s"
echo "0            graph       ${AB_TEST_A:-100}.5        2.971"
echo "     8        41.6     5.612     1425.5      178.2"
echo "                                   2048      0.068      30165       67.9"
[ "${AB_TEST_FAIL:-0}" = 1 ] && exit 3
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake-nemotron"
    path.write_text(FAKE)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def run(tmp_path, fake_bin, *args):
    env = dict(os.environ)
    for k in ("AB_TEST_A", "AB_TEST_B", "AB_TEST_FAIL"):
        env.pop(k, None)
    env["NEMOTRON"] = fake_bin
    env["OUT"] = str(tmp_path / "out")
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_each_setting_runs_with_its_variables(tmp_path, fake):
    r = run(tmp_path, fake, "/models/m", "default", "AB_TEST_A=7", "AB_TEST_A=9 AB_TEST_B=x", "--",
            "--depths", "0", "--prefill", "")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    logs = [(out / f"ab-{i}.log").read_text() for i in (1, 2, 3)]
    assert "A=unset B=unset" in logs[0]
    assert "A=7 B=unset" in logs[1]
    assert "A=9 B=x" in logs[2]
    for log in logs:
        assert "args: bench --model /models/m --depths 0 --prefill " in log
    summary = (out / "ab-summary.log").read_text()
    assert summary == r.stdout
    assert "== 1: default (exit 0)" in summary and "== 3: AB_TEST_A=9 AB_TEST_B=x (exit 0)" in summary
    assert summary.count("graph") == 3 and "0            graph       7.5" in summary
    assert summary.count("1425.5") == 3 and summary.count("30165") == 3
    assert "tok/s" not in summary  # headers are left out


def test_a_failed_run_is_reported_and_fails_the_script(tmp_path, fake):
    r = run(tmp_path, fake, "/m", "AB_TEST_FAIL=1", "default", "--")
    assert r.returncode == 1
    assert "== 1: AB_TEST_FAIL=1 (exit 3)" in r.stdout and "== 2: default (exit 0)" in r.stdout


@pytest.mark.parametrize("args", [["/m"], ["/m", "--", "--depths", "0"], ["/m", "not-a-setting", "--"],
                                  ["/m", "A=1 oops", "--"]])
def test_bad_usage_is_refused(tmp_path, fake, args):
    r = run(tmp_path, fake, *args)
    assert r.returncode == 2
    assert "bench-ab.sh" in r.stderr
    assert not (tmp_path / "out" / "ab-1.log").exists()


def test_a_missing_binary_is_refused(tmp_path):
    r = run(tmp_path, str(tmp_path / "no-such-binary"), "/m", "default", "--")
    assert r.returncode == 2 and "no binary" in r.stderr
