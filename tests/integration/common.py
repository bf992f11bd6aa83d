"""Shared helpers for integration tests: paths of the binaries, running them, model cache."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

TANDEM = os.environ.get("TANDEM_BIN", "build/bin/tandem")
LLAMA_REF = os.environ.get("LLAMA_REF_BIN", "build/bin/llama_ref")
THREADS = os.environ.get("TANDEM_TEST_THREADS", "2")


def run(cmd, check=True, timeout=600, env=None):
    """Runs a command; returns CompletedProcess with text stdout/stderr. env: extra variables."""
    full_env = dict(os.environ, **env) if env else None
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-2000:]}")
    return p


def run_json(cmd, env=None):
    return json.loads(run(cmd, env=env).stdout)


def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    return struct.unpack(f"<{len(data) // 4}f", data)


class TempDirTestCase(unittest.TestCase):
    """A temporary folder shared by the tests of one class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tandem-it-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    @classmethod
    def make_model(cls, name, *args):
        out = cls.path(name)
        if not os.path.exists(out):
            run([TANDEM, "make-test-model", "-o", out, "--threads", THREADS, *args])
        return out


def write_gguf(path, kv, tensors, version=3, alignment=32):
    """Minimal GGUF writer for hand-made (possibly invalid) test files.
    kv: list of (key, type_id, packed value bytes); tensors: list of (name, dims, type_id, data bytes)."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for k, t, v in kv:
        out += s(k) + struct.pack("<I", t) + v
    off = 0
    for name, dims, t, data in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, off)
        off += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    for _, _, _, data in tensors:
        out += data + b"\0" * ((-len(data)) % alignment)
    with open(path, "wb") as f:
        f.write(out)


def gguf_str(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
