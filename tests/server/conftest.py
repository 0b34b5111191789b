"""Fixtures for the `nemotron serve` tests: a server on the bundled demo model (random
weights, real Nemotron 3 tokenizer and chat template) on a free port, killed at the end."""
import os
import socket
import subprocess
import time

import pytest
import requests

BIN = os.environ.get("NEMOTRON_BIN", "build/nemotron")
SOURCE = os.environ.get("NEMOTRON_SOURCE_DIR", ".")
DEMO = os.path.join(SOURCE, "models", "demo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nemotron-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--model", DEMO, "--port", str(self.port), "--memory", "2", *extra],
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


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
