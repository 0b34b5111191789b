"""`nemotron synth` end to end: files written, `inspect`/`generate` accept them, output
independent of the thread count, and the NVFP4/FP8 encodings checked with an independent
numpy decoder against the BF16 synth of the same seed."""
import json
import os
import struct
import subprocess
import tempfile

import numpy as np
import pytest

BIN = os.environ["NEMOTRON_BIN"]
FIXTURES = os.path.join(os.environ["NEMOTRON_TEST_DATA"], "fixtures")


def run(*args, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300, env=e)


def plain_config(tmp, fixture):
    """The fixture's config.json without its quantization_config, written into tmp."""
    with open(os.path.join(FIXTURES, fixture, "config.json")) as f:
        text = f.read()
    # json.loads accepts Infinity; json.dumps writes it back the same way.
    c = json.loads(text)
    c.pop("quantization_config", None)
    path = os.path.join(tmp, fixture + ".config.json")
    with open(path, "w") as f:
        json.dump(c, f, indent=2)
    return path


def read_safetensors(path):
    """Independent reader: header checks + raw bytes per tensor."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    sizes = {"BF16": 2, "F32": 4, "F8_E4M3": 1, "U8": 1}
    end = 0
    out = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        assert b == end, name  # contiguous, no gaps
        assert e - b == int(np.prod(t["shape"], dtype=np.int64)) * sizes[t["dtype"]], name
        end = e
        out[name] = (t["dtype"], t["shape"], data[8 + n + b:8 + n + e])
    assert 8 + n + end == len(data)
    return out


def bf16(raw, shape):
    u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
    return u.view(np.float32).reshape(shape)


def e4m3(raw):
    v = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    s = np.where(v & 0x80, -1.0, 1.0)
    e = (v >> 3) & 0xF
    m = v & 0x7
    mag = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    return (s * mag).astype(np.float32)


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


def test_cli_end_to_end_inspect_and_generate():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model")
        p = run("synth", "--config", plain_config(tmp, "nano-moe"), "--out", out, "--seed", "5")
        assert p.returncode == 0, p.stderr
        assert "GB/s" in p.stderr and "197/197 tensors" in p.stderr
        assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
        tensors = read_safetensors(os.path.join(out, "model.safetensors"))
        assert len(tensors) == 197
        assert tensors["backbone.layers.0.mixer.A_log"][0] == "F32"
        assert tensors["backbone.layers.0.mixer.in_proj.weight"][0] == "BF16"
        p = run("inspect", "--model", out)
        assert p.returncode == 0, p.stderr
        assert "pattern     MEM*EMEM*E (10 layers: 4 mamba, 2 attention, 4 moe, 0 mlp)" in p.stdout
        assert "quantization none" in p.stdout
        assert "64 BF16" in p.stdout  # 4 MoE layers x 16 experts
        p = run("generate", "--model", out, "--ids", "1,2,3", "--max-tokens", "8", "--ignore-eos", "--json")
        assert p.returncode == 0, p.stderr
        ids = json.loads(p.stdout.strip().splitlines()[-1])["ids"]
        assert len(ids) == 8 and len(set(ids)) > 1


def test_output_does_not_depend_on_thread_count():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(FIXTURES, "super-mixed-mtp", "config.json")
        outs = []
        for threads in ("1", "3"):
            out = os.path.join(tmp, "t" + threads)
            p = run("synth", "--config", cfg, "--out", out, "--seed", "9", "--shard-gb", "0.0005",
                    env={"NEMOTRON_THREADS": threads})
            assert p.returncode == 0, p.stderr
            outs.append(out)
        names = sorted(os.listdir(outs[0]))
        assert names == sorted(os.listdir(outs[1]))
        index = json.load(open(os.path.join(outs[0], "model.safetensors.index.json")))
        shards = sorted(set(index["weight_map"].values()))
        n = len(shards)
        assert n > 1 and shards == ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]
        assert set(shards) <= set(names) and "model.safetensors" not in names
        for n in names:
            with open(os.path.join(outs[0], n), "rb") as a, open(os.path.join(outs[1], n), "rb") as b:
                assert a.read() == b.read(), n


def test_quantized_encodings_decode_close_to_the_bf16_synth():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = plain_config(tmp, "super-latent-mtp")
        for name, extra in (("bf", []), ("mx", ["--layout", "super-mixed"])):
            p = run("synth", "--config", cfg, "--out", os.path.join(tmp, name), "--seed", "4", *extra)
            assert p.returncode == 0, p.stderr
        ref = read_safetensors(os.path.join(tmp, "bf", "model.safetensors"))
        got = read_safetensors(os.path.join(tmp, "mx", "model.safetensors"))
        hf = json.load(open(os.path.join(tmp, "mx", "hf_quant_config.json")))["quantization"]
        layers = hf["quantized_layers"]
        assert hf["quant_algo"] == "MIXED_PRECISION"
        assert layers["backbone.layers.0.mixer.in_proj"] == {"quant_algo": "FP8"}
        assert layers["backbone.layers.1.mixer.shared_experts.down_proj"]["quant_algo"] == "NVFP4"
        assert "backbone.layers.8.mixer.shared_experts.down_proj" not in layers  # BF16 in the release
        assert not any(k.startswith("mtp.") for k in layers)
        seen = {"FP8": 0, "NVFP4": 0}
        for module, q in layers.items():
            dt, shape, raw = ref[module + ".weight"]
            w = bf16(raw, shape)  # the BF16 synth: master values rounded to BF16 (rel. err <= 2^-8)
            if q["quant_algo"] == "FP8":
                assert got[module + ".weight"][0] == "F8_E4M3"
                s = np.frombuffer(got[module + ".weight_scale"][2], dtype=np.float32)[0]
                assert s == pytest.approx(np.abs(w).max() / 448, rel=2 ** -7)
                deq = e4m3(got[module + ".weight"][2]).reshape(shape) * s
                bound = np.maximum(np.abs(w) * (2 ** -4 + 2 ** -7), 2 ** -9 * s)
            else:
                dt, qshape, codes = got[module + ".weight"]
                assert dt == "U8" and qshape == [shape[0], shape[1] // 2]
                c = np.frombuffer(codes, dtype=np.uint8)
                vals = np.stack([E2M1[c & 0xF], E2M1[c >> 4]], axis=-1).reshape(shape)  # low nibble first
                bs = e4m3(got[module + ".weight_scale"][2]).reshape(shape[0], shape[1] // 16)
                s2 = np.frombuffer(got[module + ".weight_scale_2"][2], dtype=np.float32)[0]
                assert s2 == pytest.approx(np.abs(w).max() / (6 * 448), rel=2 ** -7)
                unit = np.repeat(bs, 16, axis=1) * s2
                deq = vals * unit
                bound = np.maximum(0.25 * unit, np.abs(w) / 4) + np.abs(w) * 2 ** -7
            assert np.all(np.abs(deq - w) <= bound * 1.001 + 1e-12), module
            seen[q["quant_algo"]] += 1
        assert seen["FP8"] >= 10 and seen["NVFP4"] >= 64
        p = run("inspect", "--model", os.path.join(tmp, "mx"))
        assert p.returncode == 0, p.stderr
        assert "quantization MIXED_PRECISION" in p.stdout
        rows = {line.split()[0]: line for line in p.stdout.splitlines() if line.startswith(("mamba.", "moe."))}
        assert "FP8" in rows["mamba.in_proj"] and "NVFP4" in rows["moe.experts.up_proj"]


@pytest.mark.parametrize("args,message", [
    ([], "--config"),
    (["--config", "x.json", "--out", "o", "--layout", "bogus"], "bogus"),
    (["--config", "/nonexistent/config.json", "--out", "o"], "/nonexistent/config.json"),
])
def test_bad_arguments_are_errors(args, message):
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([BIN, "synth", *args], capture_output=True, text=True, timeout=60, cwd=tmp)
        assert p.returncode != 0
        assert message in p.stderr + p.stdout


def test_quant_and_layout_together_is_an_error():
    with tempfile.TemporaryDirectory() as tmp:
        q = os.path.join(os.environ["NEMOTRON_TEST_DATA"], "configs", "nano-30b-a3b.nvfp4.hf_quant_config.json")
        p = run("synth", "--config", plain_config(tmp, "nano-moe"), "--out", os.path.join(tmp, "o"), "--quant", q,
                "--layout", "super-mixed")
        assert p.returncode == 1
        assert p.stderr.startswith("error:") and "not both" in p.stderr
