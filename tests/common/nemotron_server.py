"""A `nemotron serve` process on a free port for the Python server tests (tests/server on the
CPU, tests/cuda on the GPU): started with the given flags, waited for until /health answers
200, its output kept in a log file, stopped at the end."""
import os
import socket
import subprocess
import time

import requests

BIN = os.environ.get("NEMOTRON_BIN", "build/nemotron")
SOURCE = os.environ.get("NEMOTRON_SOURCE_DIR", ".")
DEMO = os.path.join(SOURCE, "models", "demo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra, model=None, memory="2"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nemotron-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--model", model or DEMO, "--port", str(self.port), "--memory", memory, *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.output())
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy:\n" + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
