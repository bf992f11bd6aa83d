"""A `tandem serve` process for tests, and small HTTP helpers (standard library only)."""
import http.client
import json
import os
import re
import subprocess
import time

from common import TANDEM, THREADS


class Server:
    """Starts `tandem serve` on a free port; stops it (SIGTERM, then kill) on close()."""

    def __init__(self, model, *args, log_path=None):
        self.log_path = log_path or (model + f".serve-{os.getpid()}-{time.time_ns()}.log")
        self.log = open(self.log_path, "w")
        cmd = [TANDEM, "serve", "-m", model, "--port", "0", "--cpu-infer", THREADS, *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.read_log()}")
        self.host, self.port = m.group(1), int(m.group(2))

    def read_log(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.proc.stdout.close()
        return self.proc.returncode

    def conn(self, timeout=120):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=300):
        """Returns (status, headers dict, body bytes). body: dict/list (JSON), str or bytes."""
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hdrs, data

    def post(self, path, body, headers=None, timeout=300):
        status, _, data = self.request("POST", path, body, headers, timeout)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def stream(self, path, body, headers=None, timeout=300):
        """POST with stream: true; returns (status, list of parsed data events, saw [DONE])."""
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=json.dumps(dict(body, stream=True)), headers=h)
        r = c.getresponse()
        if r.status != 200:
            data = r.read()
            c.close()
            return r.status, [json.loads(data)], False
        events, done, name = [], False, None
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if not line:
                continue
            if line.startswith("event: "):  # Anthropic's named events: each data says its type too
                name = line[7:]
                continue
            assert line.startswith("data: "), line
            payload = line[6:]
            if payload == "[DONE]":
                done = True
                continue
            event = json.loads(payload)
            if name is not None:
                assert event.get("type") == name, (name, event)
            events.append(event)
        c.close()
        return 200, events, done

    def metrics(self, headers=None):
        status, _, data = self.request("GET", "/metrics", headers=headers)
        assert status == 200, status
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def wait_idle(self, timeout=30, headers=None):
        """Waits until no request runs or waits and no KV page is referenced; returns the metrics."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics(headers)
            if m["tandem_requests_running"] == 0 and m["tandem_requests_waiting"] == 0 and m["tandem_kv_pages_used"] == 0:
                return m
            if time.time() > deadline:
                raise AssertionError(f"server not idle after {timeout} s: {m}")
            time.sleep(0.1)


def stream_text(events, chat):
    """Concatenated text (content, reasoning) of stream events."""
    content, reasoning = "", ""
    for e in events:
        for ch in e.get("choices", []):
            if chat:
                d = ch.get("delta", {})
                content += d.get("content") or ""
                reasoning += d.get("reasoning_content") or ""
            else:
                content += ch.get("text", "")
    return content, reasoning
