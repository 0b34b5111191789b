"""Fixtures for the `nemotron serve` tests: a server on the bundled demo model (random
weights, real Nemotron 3 tokenizer and chat template) on a free port, killed at the end."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from nemotron_server import BIN, DEMO, SOURCE, Server, free_port  # noqa: E402,F401


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
