"""`nemotron run` driven through a pipe: two user lines, two streamed replies, exit 0 at EOF."""
import os
import subprocess

BIN = os.environ.get("NEMOTRON_BIN", "build/nemotron")
DEMO = os.path.join(os.environ.get("NEMOTRON_SOURCE_DIR", "."), "models", "demo")


def run(stdin, *args):
    return subprocess.run([BIN, "run", "--model", DEMO, "--memory", "1", "--max-tokens", "8", "--temperature", "0",
                           *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_two_turns_thinking():
    p = run("Hello\nAnd now?\n", "--verbose")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("Thinking...") == 2 and p.stdout.count("...done thinking.") == 2
    rates = [l for l in p.stderr.splitlines() if l.startswith("prompt eval:")]
    assert len(rates) == 2 and "eval:" in rates[0] and "tokens/s" in rates[0]
    # the second prompt contains the first turn: more prompt tokens
    n = [int(l.split()[2]) for l in rates]
    assert n[1] > n[0]


def test_no_think_and_bye():
    p = run("Hi\n/bye\nnever read\n", "--no-think", "--system", "You are terse.")
    assert p.returncode == 0, p.stderr
    assert "Thinking" not in p.stdout
    assert p.stdout.strip()  # one reply


def test_greedy_is_reproducible():
    assert run("Hello\n", "--no-think").stdout == run("Hello\n", "--no-think").stdout


def test_empty_input():
    p = run("")
    assert p.returncode == 0 and p.stdout == ""


def test_bad_model_dir():
    p = subprocess.run([BIN, "run", "--model", "/nonexistent"], input="", capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "error" in p.stderr


class Chat:
    """`nemotron run` on pipes, its output read as it comes (issue 18: Ctrl-C during a reply
    stopped the whole program and lost the conversation)."""

    def __init__(self, *args):
        import threading
        self.p = subprocess.Popen([BIN, "run", "--model", DEMO, "--memory", "1", "--temperature", "0", "--verbose",
                                   *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.RLock()
        for stream, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, buf), daemon=True).start()

    def _pump(self, stream, buf):
        while True:
            b = stream.read1(4096)
            if not b:
                return
            with self.lock:
                buf.extend(b)

    def send(self, line):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def wait_for(self, pred, timeout=120):
        import time
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if pred(self.out.decode(errors="replace"), self.err.decode(errors="replace")):
                    return
            assert self.p.poll() is None, "exited early: %s" % self.err.decode(errors="replace")
            time.sleep(0.02)
        raise AssertionError("timed out; stderr: %s" % self.err.decode(errors="replace"))

    def rates(self):
        with self.lock:
            return [l for l in self.err.decode().splitlines() if l.startswith("prompt eval:")]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def replying(out, turn, chars=200):
    """The turn-th reply (from 1) has shown `chars` characters of its answer (after its reasoning)."""
    parts = out.split("...done thinking.")
    return len(parts) > turn and len(parts[turn]) > chars


def test_ctrl_c_stops_the_reply_and_the_chat_goes_on():
    import signal
    # Greedy answers of the demo model to these repeat themselves up to --max-tokens: long
    # enough to be stopped midway.
    c = Chat("--max-tokens", "1000")
    try:
        c.send("Write a very long story about a dragon.")
        c.wait_for(lambda out, err: replying(out, 1))
        c.p.send_signal(signal.SIGINT)
        c.wait_for(lambda out, err: len(c.rates()) == 1)  # the reply ended, the chat waits for input
        assert c.p.poll() is None
        c.send("Tell me a story.")
        c.wait_for(lambda out, err: len(c.rates()) == 2)  # the next message is answered
        assert "...done thinking." in c.out.decode().split("Thinking...")[2]
        c.p.stdin.close()  # EOF: exits
        assert c.p.wait(timeout=60) == 0
        r1, r2 = c.rates()
        assert r1.endswith("(interrupted)") and not r2.endswith("(interrupted)"), (r1, r2)
        n1, e1, n2 = int(r1.split()[2]), int(r1.split("eval:")[2].split()[0]), int(r2.split()[2])
        assert 40 < e1 < 1000, r1
        # The stopped reply is kept: the second prompt holds the first turn with its partial
        # answer (the template drops the earlier turn's reasoning).
        assert n2 > n1 + e1 - 30, (r1, r2)
    finally:
        c.close()


def test_ctrl_c_at_the_prompt_exits_cleanly():
    import signal
    c = Chat("--max-tokens", "4")
    try:
        c.send("Hello")
        c.wait_for(lambda out, err: len(c.rates()) == 1)  # the reply is done: waiting for input
        c.p.send_signal(signal.SIGINT)
        assert c.p.wait(timeout=60) == 0
        assert c.out.decode().count("...done thinking.") == 1
    finally:
        c.close()


def test_ctrl_c_twice_during_a_reply_exits_cleanly():
    import signal
    import time
    c = Chat("--max-tokens", "5000")
    try:
        c.send("Write a very long story about a dragon.")
        c.wait_for(lambda out, err: replying(out, 1))
        c.p.send_signal(signal.SIGINT)
        time.sleep(0.01)
        c.p.send_signal(signal.SIGINT)
        assert c.p.wait(timeout=60) == 0
        assert len(c.rates()) == 1 and c.rates()[0].endswith("(interrupted)")
    finally:
        c.close()
