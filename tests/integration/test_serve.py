"""`tandem serve` end to end on a tiny synthetic model: the OpenAI API (chat, completions,
streaming, usage, stop strings, logprobs, thinking), batching equal to running alone, prefix
reuse, cancellation on disconnect, hostile requests, API keys, the queue limit, and a soak of
concurrent clients that disconnect at random."""
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import unittest

from common import TANDEM, TempDirTestCase, run, run_json
from server_util import Server, stream_text

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node") or "/usr/bin/node"
NPM = os.path.join(HERE, "..", "..", "npm", "node_modules")
SOAK_REQUESTS = int(os.environ.get("TANDEM_SOAK_REQUESTS", "500"))

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a land far away,",
    "量子计算机的基本原理是",
    "List three colors: red,",
    "SELECT name FROM users WHERE",
]


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


class ServeTest(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf")
        cls.srv = Server(cls.model, "--cache-lens", 8192, "--page-size", 128, "--max-batch-size", 4,
                         "--chunk-size", 256, log_path=cls.path("serve.log"))

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.close()
        log = cls.srv.read_log() if os.path.exists(cls.srv.log_path) else ""
        super().tearDownClass()
        assert code == 0, f"server exit code {code}\n{log[-3000:]}"

    def greedy(self, prompt, n=24, **extra):
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 2}
        body.update(extra)
        status, r = self.srv.post("/v1/completions", body)
        self.assertEqual(status, 200, r)
        return r

    def assert_same_greedy(self, alone, other, what):
        """Same tokens, except after a near-tie of the top two logprobs in the alone run."""
        ta, tb = alone["choices"][0]["logprobs"]["tokens"], other["choices"][0]["logprobs"]["tokens"]
        i = first_difference(ta, tb)
        if i is None:
            return
        if i < len(ta) and i < len(tb):
            top = sorted(alone["choices"][0]["logprobs"]["top_logprobs"][i].values(), reverse=True)
            gap = top[0] - top[1] if len(top) > 1 else 1e9
            self.assertLess(gap, 0.05, f"{what}: tokens differ at {i} with a clear margin {gap}: {ta} vs {tb}")
        else:
            self.fail(f"{what}: one output is a prefix of the other: {ta} vs {tb}")

    # --- basics -------------------------------------------------------------------------------

    def test_health_models_metrics(self):
        status, _, body = self.srv.request("GET", "/health")
        self.assertEqual((status, json.loads(body)["status"]), (200, "ok"))
        status, _, body = self.srv.request("GET", "/v1/models")
        models = json.loads(body)
        self.assertEqual(status, 200)
        self.assertEqual(models["data"][0]["id"], "tiny")
        status, _, body = self.srv.request("GET", "/v1/models/tiny")  # retrieve one model
        self.assertEqual((status, json.loads(body)["id"], json.loads(body)["object"]), (200, "tiny", "model"))
        status, _, body = self.srv.request("GET", "/v1/models/gpt-4")
        self.assertEqual(status, 404)
        self.assertIn("gpt-4", json.loads(body)["error"]["message"])
        m = self.srv.metrics()
        self.assertEqual(m["tandem_kv_pages_total"], 64)
        self.assertEqual(m["tandem_kv_page_size"], 128)
        for name in ("tandem_requests_running", "tandem_requests_waiting", "tandem_prompt_tokens_total",
                     "tandem_generation_tokens_total", "tandem_prefix_cache_hit_tokens_total",
                     'tandem_time_to_first_token_seconds_bucket{le="+Inf"}',
                     'tandem_inter_token_latency_seconds_bucket{le="+Inf"}'):
            self.assertIn(name, m)

    def test_bench_against_the_server(self):
        """`tandem bench --server`: the seed's table (one request at a time) and the concurrency sweep."""
        url = f"http://{self.srv.host}:{self.srv.port}/v1"
        sweep = ["--concurrency", "1,2", "--sweep-prompt", 8, "--sweep-gen", 4, "--sweep-requests", 2]
        j = run_json([TANDEM, "bench", "--server", url, "--prompt-lens", "16,40", "--gen", 5, *sweep, "--json"])
        self.assertEqual(j["model"], "tiny")
        self.assertEqual(j["temperature"], 0)
        for key in ("16", "40"):
            self.assertGreater(j["prefill_tok_s"][key], 0)
            self.assertGreater(j["decode_tok_s"][key], 0)
            self.assertGreater(j["ttft_s"][key], 0)
        self.assertEqual([r["streams"] for r in j["sweep"]], [1, 2])
        for r in j["sweep"]:
            self.assertEqual(r["requests"], 2 * r["streams"])
            self.assertGreater(r["aggregate_tok_s"], 0)
            self.assertLessEqual(r["ttft_p50_s"], r["ttft_p99_s"])
            # aggregate decode: the tokens streamed (usage in every chunk) while all streams decoded
            self.assertGreater(r["all_decoding_s"], 0)
            self.assertGreater(r["all_decoding_tokens"], 0)
            self.assertAlmostEqual(r["aggregate_decode_tok_s"], r["all_decoding_tokens"] / r["all_decoding_s"], places=6)
        # one stream: every token but each request's first (its prefill's) falls in the time decoding
        self.assertEqual(j["sweep"][0]["all_decoding_tokens"], 2 * (4 - 1))
        # two streams: at most the tokens after the later stream's first, before the earlier's last
        self.assertLessEqual(j["sweep"][1]["all_decoding_tokens"], 4 * (4 - 1))
        # no table: only the sweep (sampled at temperature 1)
        out = run([TANDEM, "bench", "--server", url, "--prompt-lens", "", *sweep, "--temperature", 1]).stdout
        self.assertIn("temperature 1\n", out)
        self.assertNotIn("| prompt length", out)
        self.assertIn("concurrency sweep", out)
        self.assertEqual(len([l for l in out.splitlines() if l.startswith("|       ")]), 2)
        for cmd, expect in (([url, "--prompt-lens", "", "--concurrency", ""], "nothing to measure"),
                            ([url, "--concurrency", "0"], "--concurrency"),
                            ([url, "--temperature", "3"], "--temperature"),
                            (["http://127.0.0.1:1", "--prompt-lens", "8"], "cannot reach"),
                            (["ftp://x"], "http://")):
            p = run([TANDEM, "bench", "--server", *cmd], check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(expect, p.stderr.strip().splitlines()[-1])

    def test_completion_matches_tandem_run(self):
        r = self.greedy(PROMPTS[0], n=16)
        ref = run_json([TANDEM, "run", "-m", self.model, "-p", PROMPTS[0], "-n", 16, "--json"])
        text = r["choices"][0]["text"]
        self.assertEqual(text, ref["text"])
        u = r["usage"]
        self.assertEqual(u["prompt_tokens"], len(ref["prompt_ids"]))
        self.assertEqual(u["completion_tokens"], len(ref["ids"]))
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        self.assertEqual(r["choices"][0]["finish_reason"], ref["finish_reason"])
        self.assertGreater(r["timings"]["predicted_per_second"], 0)
        # token ids as the prompt give the same answer
        r2 = self.greedy(ref["prompt_ids"], n=16)
        self.assertEqual(r2["choices"][0]["text"], text)

    def test_streaming_equals_non_streaming(self):
        for chat in (False, True):
            if chat:
                body = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 20,
                        "temperature": 0, "chat_template_kwargs": {"enable_thinking": False}}
                path = "/v1/chat/completions"
            else:
                body = {"prompt": PROMPTS[2], "max_tokens": 20, "temperature": 0}
                path = "/v1/completions"
            status, full = self.srv.post(path, body)
            self.assertEqual(status, 200, full)
            status, events, done = self.srv.stream(path, dict(body, stream_options={"include_usage": True}))
            self.assertEqual(status, 200)
            self.assertTrue(done, "no data: [DONE]")
            content, _ = stream_text(events, chat)
            expected = full["choices"][0]["message"]["content"] if chat else full["choices"][0]["text"]
            self.assertEqual(content, expected)
            finishes = [c["finish_reason"] for e in events for c in e["choices"] if c.get("finish_reason")]
            self.assertEqual(finishes, [full["choices"][0]["finish_reason"]])
            self.assertEqual(events[-1]["choices"], [])
            self.assertEqual(events[-1]["usage"]["completion_tokens"], full["usage"]["completion_tokens"])
            if chat:
                self.assertEqual(events[0]["choices"][0]["delta"]["role"], "assistant")
                self.assertEqual(events[0]["object"], "chat.completion.chunk")
            # without continuous_usage_stats the other chunks carry "usage": null
            self.assertTrue(all(e["usage"] is None for e in events[:-1]))
            # vLLM's continuous_usage_stats: every chunk carries the usage so far
            opts = {"include_usage": True, "continuous_usage_stats": True}
            status, events, done = self.srv.stream(path, dict(body, stream_options=opts))
            self.assertEqual(status, 200)
            self.assertTrue(done)
            self.assertEqual(stream_text(events, chat)[0], expected)
            counts = [e["usage"]["completion_tokens"] for e in events]
            self.assertEqual(counts, sorted(counts))
            self.assertEqual(counts[0], 0 if chat else 1)  # chat: the role chunk comes before any token
            self.assertEqual(counts[-1], full["usage"]["completion_tokens"])
            # a chunk per token here (prompts of plain text, no tokens held back)
            self.assertGreater(len(set(counts)), full["usage"]["completion_tokens"] // 2)
            for e in events:
                u = e["usage"]
                self.assertEqual(u["prompt_tokens"], full["usage"]["prompt_tokens"])
                self.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])

    def test_stop_strings_across_token_boundaries(self):
        r = self.greedy(PROMPTS[2], n=24)
        tokens = r["choices"][0]["logprobs"]["tokens"]
        text = r["choices"][0]["text"]
        # a stop string made of the end of one token and the start of the next
        cut = None
        for i in range(2, len(tokens) - 1):
            a, b = tokens[i], tokens[i + 1]
            if len(a) >= 2 and len(b) >= 2 and a.isprintable() and b.isprintable():
                cut = (i, a[-2:] + b[:2])
                break
        self.assertIsNotNone(cut, tokens)
        stop = cut[1]
        expected = text[:text.find(stop)]
        r2 = self.greedy(PROMPTS[2], n=24, stop=[stop, "never-matches-xyz"])
        self.assertEqual(r2["choices"][0]["text"], expected)
        self.assertEqual(r2["choices"][0]["finish_reason"], "stop")
        self.assertNotIn(stop, r2["choices"][0]["text"])
        status, events, done = self.srv.stream("/v1/completions", {"prompt": PROMPTS[2], "max_tokens": 24,
                                                                   "temperature": 0, "stop": stop})
        self.assertTrue(done)
        self.assertEqual(stream_text(events, False)[0], expected)

    def test_chat_thinking_is_reasoning_content(self):
        # the synthetic model writes random text: force the markers through the prompt's prefix
        # by asking the template to open thinking (Qwen3 with enable_thinking on adds nothing),
        # then check the split on what comes back.
        body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_tokens": 12, "temperature": 0}
        status, r = self.srv.post("/v1/chat/completions", body)
        self.assertEqual(status, 200, r)
        msg = r["choices"][0]["message"]
        self.assertEqual(msg["role"], "assistant")
        self.assertNotIn("<think>", msg["content"])
        # reasoning_effort none / minimal: the prompt renders as with enable_thinking false (Qwen3
        # closes an empty think block); low..high as the template's default; enable_thinking wins
        def prompt_tokens(**extra):
            status, r = self.srv.post("/v1/chat/completions", dict(body, max_tokens=1, **extra))
            self.assertEqual(status, 200, r)
            return r["usage"]["prompt_tokens"]
        plain, off = prompt_tokens(), prompt_tokens(chat_template_kwargs={"enable_thinking": False})
        self.assertGreater(off, plain)
        self.assertEqual(prompt_tokens(reasoning_effort="none"), off)
        self.assertEqual(prompt_tokens(reasoning_effort="minimal"), off)
        self.assertEqual(prompt_tokens(reasoning_effort="high"), plain)
        self.assertEqual(prompt_tokens(reasoning_effort="none", chat_template_kwargs={"enable_thinking": True}), plain)
        status, r = self.srv.post("/v1/chat/completions", dict(body, reasoning_effort="extreme"))
        self.assertEqual(status, 400, r)
        self.assertIn("reasoning_effort", r["error"]["message"])
        # multi-turn with tool calls and tool results renders and runs
        body = {"messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "max_tokens": 4, "temperature": 0}
        status, r = self.srv.post("/v1/chat/completions", body)
        self.assertEqual(status, 200, r)

    def test_sampling_is_seeded(self):
        body = {"prompt": PROMPTS[1], "max_tokens": 16, "temperature": 0.9, "top_p": 0.95, "top_k": 50,
                "min_p": 0.01, "seed": 1234, "presence_penalty": 0.5, "frequency_penalty": 0.5}
        a = self.srv.post("/v1/completions", body)[1]["choices"][0]["text"]
        b = self.srv.post("/v1/completions", body)[1]["choices"][0]["text"]
        c = self.srv.post("/v1/completions", dict(body, seed=99))[1]["choices"][0]["text"]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_logprobs(self):
        body = {"messages": [{"role": "user", "content": "Count"}], "max_tokens": 6, "temperature": 0,
                "logprobs": True, "top_logprobs": 3}
        status, r = self.srv.post("/v1/chat/completions", body)
        self.assertEqual(status, 200, r)
        content = r["choices"][0]["logprobs"]["content"]
        self.assertEqual(len(content), r["usage"]["completion_tokens"] - (r["choices"][0]["finish_reason"] == "stop"))
        for e in content:
            self.assertLessEqual(e["logprob"], 0)
            self.assertEqual(len(e["top_logprobs"]), 3)
            # greedy: the chosen token is the most likely one
            self.assertAlmostEqual(e["logprob"], e["top_logprobs"][0]["logprob"], places=4)
            self.assertEqual(bytes(e["bytes"]).decode(errors="replace"), e["token"])

    def test_logit_bias(self):
        status, r = self.srv.post("/tokenize", {"content": " blue"})
        self.assertEqual(status, 200, r)
        (blue,) = r["tokens"]
        r = self.greedy(PROMPTS[0], n=4, logit_bias={str(blue): 100})
        self.assertEqual(r["choices"][0]["text"], " blue" * 4)
        # -100 takes the greedy choice away
        first = self.greedy(PROMPTS[0], n=1)["choices"][0]["logprobs"]["tokens"][0]
        status, t = self.srv.post("/tokenize", {"content": first})
        other = self.greedy(PROMPTS[0], n=1, logit_bias={str(i): -100 for i in t["tokens"]})
        self.assertNotEqual(other["choices"][0]["logprobs"]["tokens"][0], first)

    def test_vllm_sampling_extras(self):
        # stop_token_ids: the greedy run's third token ends it (not emitted)
        base = self.greedy(PROMPTS[2], n=8)
        ids = self.srv.post("/tokenize", {"content": "".join(base["choices"][0]["logprobs"]["tokens"])})[1]["tokens"]
        cut = self.greedy(PROMPTS[2], n=8, stop_token_ids=[ids[2]])
        self.assertEqual(cut["choices"][0]["finish_reason"], "stop")
        self.assertEqual(cut["choices"][0]["logprobs"]["tokens"], base["choices"][0]["logprobs"]["tokens"][:2])
        # min_tokens: the same end token cannot come before it
        later = self.greedy(PROMPTS[2], n=8, stop_token_ids=[ids[2]], min_tokens=3)
        self.assertGreaterEqual(later["usage"]["completion_tokens"], 3)
        self.assertNotEqual(later["choices"][0]["logprobs"]["tokens"][:3], base["choices"][0]["logprobs"]["tokens"][:2])
        # repetition_penalty (its arithmetic: AdjustLogits in serve_test.cpp): 1 changes nothing,
        # 2 is taken
        body = {"prompt": PROMPTS[4], "max_tokens": 6, "temperature": 0}
        plain = self.srv.post("/v1/completions", body)[1]["choices"][0]["text"]
        same = self.srv.post("/v1/completions", dict(body, repetition_penalty=1.0))[1]["choices"][0]["text"]
        self.assertEqual(plain, same)
        pen = self.srv.post("/v1/completions", dict(body, repetition_penalty=2.0))
        self.assertEqual(pen[0], 200, pen[1])
        for bad in [{"repetition_penalty": 0}, {"repetition_penalty": 3}, {"min_tokens": -1},
                    {"stop_token_ids": [999999999]}, {"stop_token_ids": "x"}]:
            status, r = self.srv.post("/v1/completions", dict(body, **bad))
            self.assertEqual(status, 400, (bad, r))

    def test_response_format_json_schema(self):
        schema = {"type": "object",
                  "properties": {"city": {"type": "string", "maxLength": 12}, "sunny": {"type": "boolean"},
                                 "temp": {"type": "integer"}, "wind": {"enum": ["low", "high"]},
                                 "hours": {"type": "array", "items": {"type": "number"}, "maxItems": 3}},
                  "required": ["city", "sunny", "temp", "wind"], "additionalProperties": False}
        fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
        ids = {t: self.srv.post("/tokenize", {"content": t})[1]["tokens"] for t in ("<think>", "</think>")}
        self.assertEqual([len(v) for v in ids.values()], [1, 1], ids)
        open_id, close_id = str(ids["<think>"][0]), str(ids["</think>"][0])
        # (thinking on, the model may open its reasoning with the first token: the biases make it
        # open and close it at once, or never open it; the document follows in both)
        cases = [(0, False, {}), (1.0, False, {}), (0.8, True, {open_id: 70, close_id: 100}), (1.2, True, {open_id: -100})]
        for i, (temperature, think, bias) in enumerate(cases):
            body = {"messages": [{"role": "user", "content": f"Weather in city {i}?"}], "max_tokens": 400,
                    "temperature": temperature, "seed": 7 + i, "response_format": fmt,
                    "chat_template_kwargs": {"enable_thinking": think}, "logit_bias": bias, "logprobs": True}
            status, r = self.srv.post("/v1/chat/completions", body)
            self.assertEqual(status, 200, r)
            choice = r["choices"][0]
            self.assertEqual(choice["finish_reason"], "stop", choice)
            tokens = [e["token"] for e in choice["logprobs"]["content"]]
            if bias.get(open_id, 0) > 0:  # reasoning first (empty here), then the document
                self.assertEqual(tokens[:2], ["<think>", "</think>"], tokens)
            self.assertNotIn("<think>", tokens[2:])
            doc = json.loads(choice["message"]["content"])
            self.assertEqual(set(doc) - set(schema["properties"]), set())
            self.assertTrue({"city", "sunny", "temp", "wind"} <= set(doc), doc)
            self.assertIsInstance(doc["city"], str)
            self.assertLessEqual(len(doc["city"]), 12)
            self.assertIsInstance(doc["sunny"], bool)
            self.assertIsInstance(doc["temp"], int)
            self.assertIn(doc["wind"], ["low", "high"])
            self.assertLessEqual(len(doc.get("hours", [])), 3)
            # streamed, the same text
            if temperature == 0:
                status, events, done = self.srv.stream("/v1/chat/completions", dict(body, stream=True))
                self.assertEqual((status, done), (200, True))
                self.assertEqual(stream_text(events, True)[0], choice["message"]["content"])

    def test_tool_choice_required_and_named(self):
        tools = [
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                                 "unit": {"$ref": "#/$defs/unit"}},
                "required": ["city", "unit"], "$defs": {"unit": {"enum": ["C", "F"]}}}}},
            {"type": "function", "function": {"name": "now"}},  # no parameters: {} only
        ]
        msgs = [{"role": "user", "content": "Weather in Paris, and the time?"}]
        for i, choice_ in enumerate(["required", {"type": "function", "function": {"name": "get_weather"}}]):
            body = {"messages": msgs, "tools": tools, "tool_choice": choice_, "max_tokens": 600, "parallel_tool_calls": False,
                    "temperature": 0.9, "seed": 3 + i, "chat_template_kwargs": {"enable_thinking": False}}
            status, r = self.srv.post("/v1/chat/completions", body)
            self.assertEqual(status, 200, r)
            choice = r["choices"][0]
            self.assertEqual(choice["finish_reason"], "tool_calls", choice)
            calls = choice["message"]["tool_calls"]
            self.assertEqual(len(calls), 1)
            self.assertIsNone(choice["message"]["content"])
            for c in calls:
                args = json.loads(c["function"]["arguments"])
                if c["function"]["name"] == "get_weather":
                    self.assertEqual(set(args), {"city", "unit"})
                    self.assertIsInstance(args["city"], str)
                    self.assertLessEqual(len(args["city"]), 10)
                    self.assertIn(args["unit"], ["C", "F"])
                else:
                    self.assertEqual((c["function"]["name"], args), ("now", {}))
            if isinstance(choice_, dict):
                self.assertEqual([c["function"]["name"] for c in calls], ["get_weather"])
            # streamed: the same calls, in one delta at the end, and no content
            status, events, done = self.srv.stream("/v1/chat/completions", dict(body, stream=True))
            self.assertEqual((status, done), (200, True))
            deltas = [ch.get("delta", {}) for e in events for ch in e.get("choices", [])]
            self.assertEqual("".join(d.get("content") or "" for d in deltas), "")
            streamed = [tc for d in deltas for tc in d.get("tool_calls", [])]
            self.assertEqual([(c["function"]["name"], c["function"]["arguments"]) for c in streamed],
                             [(c["function"]["name"], c["function"]["arguments"]) for c in calls])
            self.assertEqual(events[-1]["choices"][0]["finish_reason"], "tool_calls")
        # none: the tools are not offered, the answer is text
        status, r = self.srv.post("/v1/chat/completions", {"messages": msgs, "tools": tools, "tool_choice": "none",
                                                           "max_tokens": 8, "temperature": 0})
        self.assertEqual(status, 200, r)
        self.assertNotIn("tool_calls", r["choices"][0]["message"])
        for bad in ["sometimes", {"type": "function", "function": {"name": "fly"}}, {"type": "function"}]:
            status, r = self.srv.post("/v1/chat/completions", {"messages": msgs, "tools": tools, "tool_choice": bad})
            self.assertEqual(status, 400, r)
        status, r = self.srv.post("/v1/chat/completions", {"messages": msgs, "tool_choice": "required"})
        self.assertEqual(status, 400, r)

    def test_tool_calls_auto_follow_the_tools(self):
        """tool_choice auto: what the model writes after <tool_call> is one call of the offered
        tools that their schemas accept (the random model is pushed to open calls by logit_bias);
        parallel_tool_calls false: no second call opens; with --no-tool-call-constraint the same
        request gets no call."""
        tools = [
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                                 "unit": {"enum": ["C", "F"]}},
                "required": ["city", "unit"], "additionalProperties": False}}},
            {"type": "function", "function": {"name": "now"}},
        ]
        open_id = self.srv.post("/tokenize", {"content": "<tool_call>"})[1]["tokens"]
        self.assertEqual(len(open_id), 1)
        msgs = [{"role": "user", "content": "Weather in Paris?"}]
        body = {"messages": msgs, "tools": tools, "max_tokens": 400, "temperature": 0.8, "logit_bias": {str(open_id[0]): 100},
                "chat_template_kwargs": {"enable_thinking": False}}

        def check(call):
            name, args = call["function"]["name"], json.loads(call["function"]["arguments"])
            if name == "get_weather":
                self.assertEqual(set(args), {"city", "unit"})
                self.assertLessEqual(len(args["city"]), 10)
                self.assertIn(args["unit"], ["C", "F"])
            else:
                self.assertEqual((name, args), ("now", {}))

        for seed in (1, 2):
            req = dict(body, seed=seed, parallel_tool_calls=False)
            status, r = self.srv.post("/v1/chat/completions", req)
            self.assertEqual(status, 200, r)
            choice = r["choices"][0]
            self.assertEqual(choice["finish_reason"], "tool_calls", choice)
            calls = choice["message"]["tool_calls"]
            self.assertEqual(len(calls), 1, choice)
            check(calls[0])
            self.assertNotIn("<tool_call>", choice["message"]["content"] or "")
            status, events, done = self.srv.stream("/v1/chat/completions", dict(req, stream=True))
            self.assertEqual((status, done), (200, True))
            deltas = [ch.get("delta", {}) for e in events for ch in e.get("choices", [])]
            streamed = [tc for d in deltas for tc in d.get("tool_calls", [])]
            self.assertEqual([(c["function"]["name"], c["function"]["arguments"]) for c in streamed],
                             [(c["function"]["name"], c["function"]["arguments"]) for c in calls])
        # parallel calls (the default): the model opens one after another, each whole and valid
        # (a last one cut by max_tokens stays text)
        status, r = self.srv.post("/v1/chat/completions", dict(body, seed=1))
        self.assertEqual(status, 200, r)
        calls = r["choices"][0]["message"]["tool_calls"]
        self.assertGreaterEqual(len(calls), 2, r)
        for c in calls:
            check(c)
        srv = Server(self.model, "--no-tool-call-constraint", log_path=self.path("free_tools.log"))
        try:
            status, r = srv.post("/v1/chat/completions", dict(body, seed=1, max_tokens=64))
            self.assertEqual(status, 200, r)
            self.assertNotIn("tool_calls", r["choices"][0]["message"])
            self.assertEqual(r["choices"][0]["finish_reason"], "length")
        finally:
            self.assertEqual(srv.close(), 0)
        # a template whose model writes XML calls (Qwen3-Coder): the call after the marker is
        # <function=NAME><parameter=P>VALUE</parameter>..., typed values as the template prints
        # them, parsed back into tool_calls
        with open(os.path.join(HERE, "..", "data", "chat_templates", "qwen3-coder.json"), encoding="utf-8") as f:
            coder = json.load(f)["chat_template"]
        tmpl = self.path("qwen3-coder.jinja")
        with open(tmpl, "w", encoding="utf-8") as f:
            f.write(coder)
        typed = [{"type": "function", "function": {"name": "get_weather", "parameters": {
                     "type": "object", "properties": {"unit": {"type": "string", "enum": ["C", "F"]},
                                                      "days": {"type": "integer"}, "hourly": {"type": "boolean"}},
                     "required": ["unit", "days"]}}},
                 {"type": "function", "function": {"name": "now"}}]
        srv = Server(self.model, "--chat-template", tmpl, log_path=self.path("coder.log"))
        try:
            for seed in (1, 2):
                req = dict(body, tools=typed, seed=seed, parallel_tool_calls=False)
                status, r = srv.post("/v1/chat/completions", req)
                self.assertEqual(status, 200, r)
                calls = r["choices"][0]["message"].get("tool_calls")
                self.assertEqual(len(calls or []), 1, r)
                name, args = calls[0]["function"]["name"], json.loads(calls[0]["function"]["arguments"])
                if name == "get_weather":
                    self.assertIn(args["unit"], ["C", "F"])
                    self.assertIsInstance(args["days"], int)
                    self.assertLessEqual(set(args), {"unit", "days", "hourly"})
                    if "hourly" in args:
                        self.assertIsInstance(args["hourly"], bool)
                else:
                    self.assertEqual((name, args), ("now", {}))
                self.assertNotIn("<tool_call>", r["choices"][0]["message"]["content"] or "")
            plain = srv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 1})[1]["usage"]["prompt_tokens"]
            self.assertGreater(r["usage"]["prompt_tokens"], plain + 100)  # the <tools> block
        finally:
            self.assertEqual(srv.close(), 0)
        # without the constraint the biased marker simply repeats (the test above can fail)
        srv = Server(self.model, "--chat-template", tmpl, "--no-tool-call-constraint", log_path=self.path("coder_free.log"))
        try:
            status, r = srv.post("/v1/chat/completions", dict(body, tools=typed, seed=1, max_tokens=8))
            self.assertEqual(status, 200, r)
            self.assertEqual(r["choices"][0]["message"]["content"], "<tool_call>" * 8)
        finally:
            self.assertEqual(srv.close(), 0)

    def test_vllm_guided_choice_and_json(self):
        choices = ["positive", "negative", "neutral"]
        for i, temperature in enumerate([0, 1.0, 1.3]):
            r = self.srv.post("/v1/completions", {"prompt": f"Sentiment {i}:", "max_tokens": 20, "seed": i,
                                                  "temperature": temperature, "guided_choice": choices})[1]
            self.assertEqual(r["choices"][0]["finish_reason"], "stop", r)
            self.assertIn(r["choices"][0]["text"], choices)
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        for guided in (schema, json.dumps(schema)):  # an object, or its JSON text
            status, r = self.srv.post("/v1/chat/completions", {
                "messages": [{"role": "user", "content": "ok?"}], "max_tokens": 300, "temperature": 0,
                "guided_json": guided, "chat_template_kwargs": {"enable_thinking": False}})
            self.assertEqual(status, 200, r)
            self.assertEqual(r["choices"][0]["finish_reason"], "stop", r)
            self.assertIsInstance(json.loads(r["choices"][0]["message"]["content"])["ok"], bool)
        for bad in [{"guided_choice": []}, {"guided_choice": "yes"}, {"guided_choice": ["a", 1]},
                    {"guided_json": "{not json"}, {"guided_json": {"type": "x"}},
                    {"guided_choice": ["a"], "response_format": {"type": "json_object"}}]:
            status, r = self.srv.post("/v1/completions", dict({"prompt": "x", "max_tokens": 2}, **bad))
            self.assertEqual(status, 400, (bad, r))

    def test_response_format_json_object(self):
        for seed in range(3):
            body = {"prompt": "A JSON object:", "max_tokens": 300, "temperature": 0.7, "seed": seed,
                    "response_format": {"type": "json_object"}}
            status, r = self.srv.post("/v1/completions", body)
            self.assertEqual(status, 200, r)
            text = r["choices"][0]["text"]
            if r["choices"][0]["finish_reason"] == "stop":
                self.assertIsInstance(json.loads(text), dict)
            else:  # cut at max_tokens: still the start of an object
                self.assertEqual(r["choices"][0]["finish_reason"], "length")
                self.assertTrue(text.lstrip().startswith("{"), text)
        # a whole document whose end token is barred (ignore_eos, min_tokens) is the answer
        for extra in ({"ignore_eos": True}, {"min_tokens": 20}):
            body = {"prompt": "Yes or no?", "max_tokens": 50, "guided_choice": ["yes", "no"], **extra}
            status, r = self.srv.post("/v1/completions", body)
            self.assertEqual(status, 200, r)
            self.assertEqual(r["choices"][0]["finish_reason"], "stop", r)
            self.assertIn(r["choices"][0]["text"], ["yes", "no"])

    def test_n_choices_and_prompt_lists(self):
        # greedy: every choice of a prompt is its single answer, prompt by prompt (i * n + j)
        ids = self.srv.post("/tokenize", {"content": PROMPTS[1]})[1]["tokens"]
        alone = [self.greedy(PROMPTS[0], n=10), self.greedy(ids, n=10)]
        status, r = self.srv.post("/v1/completions", {"prompt": [PROMPTS[0], ids], "max_tokens": 10, "temperature": 0,
                                                      "logprobs": 2, "n": 3})
        self.assertEqual(status, 200, r)
        self.assertEqual([c["index"] for c in r["choices"]], list(range(6)))
        for c in r["choices"]:
            self.assert_same_greedy(alone[c["index"] // 3], {"choices": [c]}, f"choice {c['index']}")
        u = r["usage"]
        self.assertEqual(u["prompt_tokens"], sum(a["usage"]["prompt_tokens"] for a in alone))  # each prompt once
        self.assertEqual(u["completion_tokens"], 3 * 10 + 3 * 10)
        # sampled: the choices differ, and the request is repeatable with its seed
        body = {"prompt": PROMPTS[3], "max_tokens": 12, "temperature": 1.0, "seed": 5, "n": 4}
        texts = [c["text"] for c in self.srv.post("/v1/completions", body)[1]["choices"]]
        self.assertEqual(len(texts), 4)
        self.assertGreater(len(set(texts)), 1, texts)
        # streamed: one chunk stream per choice, each equal to its answer, one finish each
        body = {"prompt": [PROMPTS[0], PROMPTS[2]], "max_tokens": 8, "temperature": 0, "n": 2}
        status, full = self.srv.post("/v1/completions", body)
        self.assertEqual(status, 200, full)
        status, events, done = self.srv.stream("/v1/completions", dict(body, stream_options={"include_usage": True}))
        self.assertEqual(status, 200)
        self.assertTrue(done)
        got, finishes = {}, {}
        for e in events[:-1]:
            (c,) = e["choices"]
            got[c["index"]] = got.get(c["index"], "") + c["text"]
            if c["finish_reason"]:
                finishes[c["index"]] = finishes.get(c["index"], 0) + 1
        self.assertEqual(got, {c["index"]: c["text"] for c in full["choices"]})
        self.assertEqual(finishes, {i: 1 for i in range(4)})
        self.assertEqual(events[-1]["usage"]["completion_tokens"], full["usage"]["completion_tokens"])
        # chat: n answers of one conversation
        chat = {"messages": [{"role": "user", "content": "Name a fruit"}], "max_tokens": 6, "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": False}}
        one = self.srv.post("/v1/chat/completions", chat)[1]["choices"][0]["message"]["content"]
        status, r = self.srv.post("/v1/chat/completions", dict(chat, n=2))
        self.assertEqual(status, 200, r)
        self.assertEqual([c["message"]["content"] for c in r["choices"]], [one, one])
        status, events, done = self.srv.stream("/v1/chat/completions", dict(chat, n=2))
        self.assertTrue(done)
        roles = [c["index"] for e in events for c in e["choices"] if c["delta"].get("role")]
        self.assertEqual(sorted(roles), [0, 1])
        self.srv.wait_idle()

    def test_echo_and_prompt_logprobs(self):
        # what lm-evaluation-harness sends for loglikelihood: echo, logprobs, max_tokens 0 or 1
        text = PROMPTS[2] + " there lived a dragon who loved to count the stars"
        ids = self.srv.post("/tokenize", {"content": text})[1]["tokens"]
        body = {"prompt": text, "echo": True, "logprobs": 3, "max_tokens": 0, "temperature": 0}
        lm_eval = {"prompt": [ids], "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0, "seed": 1234}
        status, r = self.srv.post("/v1/completions", body)
        self.assertEqual(status, 200, r)
        c = r["choices"][0]
        self.assertEqual(c["text"], text)
        self.assertEqual(c["finish_reason"], "length")
        self.assertEqual(r["usage"]["completion_tokens"], 0)
        lp = c["logprobs"]
        self.assertEqual(len(lp["tokens"]), len(ids))
        self.assertEqual("".join(lp["tokens"]), text)
        self.assertEqual(lp["text_offset"][0], 0)
        self.assertEqual(lp["text_offset"][-1], len(text.encode()) - len(lp["tokens"][-1].encode()))
        self.assertIsNone(lp["token_logprobs"][0])
        self.assertIsNone(lp["top_logprobs"][0])
        for i in range(1, len(ids)):
            self.assertLessEqual(lp["token_logprobs"][i], 0)
            top = lp["top_logprobs"][i]
            self.assertLessEqual(len(top), 3)
            self.assertLessEqual(lp["token_logprobs"][i], max(top.values()) + 1e-5)
        # each position equals the logprob of that token sampled after the prompt's head
        # (logit_bias forces the token; logprobs report the model's own distribution)
        for p in (1, len(ids) // 2, len(ids) - 1):
            one = self.greedy(ids[:p], n=1, logit_bias={str(ids[p]): 100}, logprobs=0)
            self.assertEqual(one["choices"][0]["logprobs"]["tokens"][0], lp["tokens"][p])
            self.assertAlmostEqual(one["choices"][0]["logprobs"]["token_logprobs"][0], lp["token_logprobs"][p],
                                   delta=2e-3, msg=f"position {p}")
        # max_tokens 1: the prompt, then one token
        status, r1 = self.srv.post("/v1/completions", lm_eval)
        self.assertEqual(status, 200, r1)
        lp1 = r1["choices"][0]["logprobs"]
        self.assertEqual(len(lp1["tokens"]), len(ids) + 1)
        self.assertEqual(r1["choices"][0]["text"], text + lp1["tokens"][-1])
        for a, b in zip(lp["token_logprobs"][1:], lp1["token_logprobs"][1:len(ids)]):
            self.assertAlmostEqual(a, b, delta=2e-3)
        # lm-evaluation-harness reads a continuation as greedy when each token's logprob equals the
        # best of its top_logprobs exactly: where the prompt token is the top one, the two are equal
        # (the generated token, greedy at temperature 0, is one such position)
        greedy_positions = 0
        for i in range(1, len(ids) + 1):
            (best_tok, best), = lp1["top_logprobs"][i].items()
            if best_tok == lp1["tokens"][i]:
                self.assertEqual(lp1["token_logprobs"][i], best)
                greedy_positions += 1
            else:
                self.assertLess(lp1["token_logprobs"][i], best)
        self.assertGreaterEqual(greedy_positions, 1)
        # streamed: the echo (with the prompt's logprobs) first, then the answer
        status, events, done = self.srv.stream("/v1/completions", dict(body, max_tokens=3))
        self.assertTrue(done)
        first = events[0]["choices"][0]
        self.assertEqual(first["text"], text)
        self.assertEqual(first["logprobs"]["tokens"], lp["tokens"])
        # vLLM's prompt_logprobs: per position the prompt token's logprob and rank, and the best k;
        # a long prompt (several 128-token chunks) that the prefix cache holds is still computed
        long_ids = (ids * 40)[:300]
        for attempt in range(2):
            status, v = self.srv.post("/v1/completions", {"prompt": long_ids, "prompt_logprobs": 2, "max_tokens": 1,
                                                          "temperature": 0})
            self.assertEqual(status, 200, v)
            pl = v["choices"][0]["prompt_logprobs"]
            self.assertEqual(len(pl), 300)
            self.assertIsNone(pl[0])
            for p in range(1, 300):
                entry = pl[p][str(long_ids[p])]
                best = max(e["logprob"] for e in pl[p].values())
                self.assertEqual(entry["rank"] == 1, abs(entry["logprob"] - best) < 1e-6, (p, pl[p]))
                self.assertTrue(any(e["rank"] == 1 for e in pl[p].values()))
            if attempt == 0:
                first_run = pl
            else:
                self.assertEqual(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0)
                for p in range(1, 300):
                    self.assertAlmostEqual(pl[p][str(long_ids[p])]["logprob"], first_run[p][str(long_ids[p])]["logprob"],
                                           delta=1e-4)
        # chat: vLLM puts them at the top of the answer
        status, cr = self.srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                            "prompt_logprobs": 0, "max_tokens": 1})
        self.assertEqual(status, 200, cr)
        self.assertEqual(len(cr["prompt_logprobs"]), cr["usage"]["prompt_tokens"])
        self.assertTrue(all(len(e) == 1 for e in cr["prompt_logprobs"][1:]))  # k = 0: the prompt token alone
        for p in (200, 299):  # past the first chunks
            one = self.greedy(long_ids[:p], n=1, logit_bias={str(long_ids[p]): 100}, logprobs=0)
            self.assertAlmostEqual(one["choices"][0]["logprobs"]["token_logprobs"][0],
                                   first_run[p][str(long_ids[p])]["logprob"], delta=2e-3, msg=f"position {p}")

    def test_anthropic_messages(self):
        # the same conversation through the Messages API and the chat API: the same greedy answer
        body = {"model": "claude-haiku-4-5", "max_tokens": 12, "temperature": 0, "system": "Be brief.",
                "messages": [{"role": "user", "content": "Tell me a story"}], "thinking": {"type": "disabled"}}
        status, m = self.srv.post("/v1/messages", body)
        self.assertEqual(status, 200, m)
        chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}],
                "max_tokens": 12, "temperature": 0, "chat_template_kwargs": {"enable_thinking": False}}
        status, c = self.srv.post("/v1/chat/completions", chat)
        self.assertEqual(status, 200, c)
        self.assertEqual(m["type"], "message")
        self.assertEqual(m["model"], "claude-haiku-4-5")
        self.assertEqual([b["type"] for b in m["content"]], ["text"])
        self.assertEqual(m["content"][0]["text"], c["choices"][0]["message"]["content"])
        self.assertEqual(m["stop_reason"], {"length": "max_tokens", "stop": "end_turn"}[c["choices"][0]["finish_reason"]])
        u = m["usage"]
        self.assertEqual(u["input_tokens"] + u["cache_read_input_tokens"], c["usage"]["prompt_tokens"])
        self.assertEqual(u["output_tokens"], c["usage"]["completion_tokens"])
        # streamed: message_start, one text block's deltas, message_delta, message_stop
        status, events, _ = self.srv.stream("/v1/messages", body)
        self.assertEqual(status, 200)
        kinds = [e["type"] for e in events]
        self.assertEqual(kinds[:2], ["message_start", "content_block_start"])
        self.assertEqual(kinds[-3:], ["content_block_stop", "message_delta", "message_stop"])
        self.assertEqual(set(kinds[2:-3]), {"content_block_delta"})
        self.assertEqual("".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta"),
                         m["content"][0]["text"])
        self.assertEqual(events[-2]["delta"]["stop_reason"], m["stop_reason"])
        self.assertEqual(events[-2]["usage"]["output_tokens"], u["output_tokens"])
        # a stop sequence: cut before it, reported with the sequence
        text = m["content"][0]["text"]
        stop = next((text[i:i + 3] for i in range(len(text) // 3, len(text) - 3) if text[i:i + 3].isalpha()), None)
        if stop:
            status, cut = self.srv.post("/v1/messages", dict(body, stop_sequences=[stop]))
            self.assertEqual(cut["content"][0]["text"], text[:text.find(stop)])
            self.assertEqual((cut["stop_reason"], cut["stop_sequence"]), ("stop_sequence", stop))
        # tool use and tool results render as the OpenAI conversation they mean (count_tokens),
        # and a forced call comes back as a tool_use block following the tool's schema
        tools = [{"name": "weather", "description": "Weather of a city",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                                   "required": ["city"], "additionalProperties": False}}]
        conv = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                                  {"type": "tool_use", "id": "toolu_9", "name": "weather",
                                                   "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"},
                                             {"type": "text", "text": "And tomorrow?"}]}]
        status, n = self.srv.post("/v1/messages/count_tokens", {"model": "x", "messages": conv, "tools": tools})
        self.assertEqual(status, 200, n)
        oa = [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "Checking.", "tool_calls": [
                  {"id": "toolu_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "toolu_9", "content": "sunny"},
              {"role": "user", "content": "And tomorrow?"}]
        status, c = self.srv.post("/v1/chat/completions", {"messages": oa, "max_tokens": 1, "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather of a city",
                                              "parameters": tools[0]["input_schema"]}}]})
        self.assertEqual(status, 200, c)
        self.assertEqual(n["input_tokens"], c["usage"]["prompt_tokens"])
        status, t = self.srv.post("/v1/messages", {"max_tokens": 120, "messages": conv, "tools": tools,
                                                   "tool_choice": {"type": "tool", "name": "weather"},
                                                   "thinking": {"type": "disabled"}})
        self.assertEqual(status, 200, t)
        self.assertEqual(t["stop_reason"], "tool_use")
        use = [b for b in t["content"] if b["type"] == "tool_use"]
        self.assertEqual(len(use), 1)
        self.assertEqual(use[0]["name"], "weather")
        self.assertEqual(list(use[0]["input"]), ["city"])
        self.assertLessEqual(len(use[0]["input"]["city"]), 12)
        # structured outputs (output_format): the text block is a document of the schema
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                  "additionalProperties": False}
        status, j = self.srv.post("/v1/messages", dict(body, max_tokens=200, output_format={"type": "json_schema",
                                                                                             "schema": schema}))
        self.assertEqual(status, 200, j)
        self.assertEqual(j["stop_reason"], "end_turn")
        self.assertEqual(list(json.loads(j["content"][0]["text"])), ["ok"])
        # errors in Anthropic's shape
        for bad in [{"messages": []}, {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
                    {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
                    {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "bash_20250124", "name": "bash"}]}]:
            status, e = self.srv.post("/v1/messages", bad)
            self.assertEqual(status, 400, (bad, e))
            self.assertEqual(e["type"], "error")
            self.assertEqual(e["error"]["type"], "invalid_request_error")
            self.assertTrue(e["error"]["message"])

    def test_responses_api(self):
        # the same conversation through /v1/responses and the chat API: the same greedy answer
        body = {"input": "Tell me a story", "instructions": "Be brief.", "max_output_tokens": 12, "temperature": 0,
                "reasoning": {"effort": "none"}}
        status, r = self.srv.post("/v1/responses", body)
        self.assertEqual(status, 200, r)
        chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}],
                "max_tokens": 12, "temperature": 0, "chat_template_kwargs": {"enable_thinking": False}}
        c = self.srv.post("/v1/chat/completions", chat)[1]
        self.assertEqual(r["object"], "response")
        self.assertEqual(r["output_text"], c["choices"][0]["message"]["content"])
        self.assertEqual([o["type"] for o in r["output"]], ["message"])
        self.assertEqual(r["status"], {"length": "incomplete", "stop": "completed"}[c["choices"][0]["finish_reason"]])
        self.assertEqual(r["usage"]["input_tokens"], c["usage"]["prompt_tokens"])
        self.assertEqual(r["usage"]["output_tokens"], c["usage"]["completion_tokens"])
        # streamed: numbered events, text deltas that add up, the final response carrying the same
        status, events, _ = self.srv.stream("/v1/responses", body)
        self.assertEqual(status, 200)
        self.assertEqual([e["sequence_number"] for e in events], list(range(len(events))))
        kinds = [e["type"] for e in events]
        self.assertEqual(kinds[:4], ["response.created", "response.in_progress", "response.output_item.added",
                                     "response.content_part.added"])
        self.assertEqual(kinds[-4:], ["response.output_text.done", "response.content_part.done",
                                      "response.output_item.done", "response." + r["status"]])
        self.assertEqual("".join(e["delta"] for e in events if e["type"] == "response.output_text.delta"), r["output_text"])
        self.assertEqual(events[-1]["response"]["output_text"], r["output_text"])
        # function_call / function_call_output items render as the chat conversation they mean
        fn = {"type": "function", "name": "weather", "description": "Weather of a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                             "required": ["city"], "additionalProperties": False}}
        items = [{"role": "user", "content": "Weather in Paris?"},
                 {"type": "function_call", "call_id": "call_9", "name": "weather", "arguments": "{\"city\": \"Paris\"}"},
                 {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
                 {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]}]
        status, r2 = self.srv.post("/v1/responses", {"input": items, "tools": [fn, {"type": "web_search"}],
                                                     "max_output_tokens": 1})
        self.assertEqual(status, 200, r2)
        oa = [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [
                  {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
              {"role": "user", "content": "And tomorrow?"}]
        c2 = self.srv.post("/v1/chat/completions", {"messages": oa, "max_tokens": 1, "tools": [
            {"type": "function", "function": {k: fn[k] for k in ("name", "description", "parameters")}}]})[1]
        self.assertEqual(r2["usage"]["input_tokens"], c2["usage"]["prompt_tokens"])
        # a forced call: a function_call item following the schema, streamed the same
        forced = {"input": items, "tools": [fn], "tool_choice": {"type": "function", "name": "weather"},
                  "max_output_tokens": 120, "reasoning": {"effort": "none"}, "temperature": 0}
        status, r3 = self.srv.post("/v1/responses", forced)
        self.assertEqual(status, 200, r3)
        calls = [o for o in r3["output"] if o["type"] == "function_call"]
        self.assertEqual(len(calls), 1)
        self.assertEqual(list(json.loads(calls[0]["arguments"])), ["city"])
        status, events, _ = self.srv.stream("/v1/responses", forced)
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        self.assertEqual([d["arguments"] for d in done if d["type"] == "function_call"], [calls[0]["arguments"]])
        # stateless: previous_response_id is refused, and what cannot be served says which field
        for bad in [dict(body, previous_response_id=r["id"]), {"input": [{"type": "computer_call"}]},
                    {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, {}]:
            status, e = self.srv.post("/v1/responses", bad)
            self.assertEqual(status, 400, (bad, e))
            self.assertTrue(e["error"]["message"])

    def test_tokenize_detokenize(self):
        status, r = self.srv.post("/tokenize", {"content": "Hello world"})
        self.assertEqual(status, 200)
        ids = json.loads(run([TANDEM, "tokenize", "-m", self.model, "Hello world"]).stdout)
        self.assertEqual(r["tokens"], ids)
        status, r = self.srv.post("/detokenize", {"tokens": ids})
        self.assertEqual(r["content"], "Hello world")

    # --- batching -----------------------------------------------------------------------------

    @staticmethod
    def concurrently(n, fn):
        """[fn(0), ..., fn(n - 1)], run on n threads at once."""
        results = [None] * n

        def go(i):
            results[i] = fn(i)
        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def test_batched_greedy_equals_alone(self):
        alone = [self.greedy(p, n=20) for p in PROMPTS[:5]]
        results = self.concurrently(5, lambda i: self.greedy(PROMPTS[i], n=20))
        for i in range(5):
            self.assert_same_greedy(alone[i], results[i], f"prompt {i} batched")

    def test_hybrid_path_serves_the_same(self):
        # --device cpu-split: the engine on the hybrid driver with the CPU as its device half
        # (what a GPU does through the same calls): alone, the same logprobs to the bit; batched,
        # the same tokens except at near-ties
        srv = Server(self.model, "--device", "cpu-split", "--max-batch-size", 4, log_path=self.path("split.log"))
        try:
            body = lambda p: {"prompt": p, "max_tokens": 12, "temperature": 0, "logprobs": 2}
            for p in PROMPTS[:2]:
                status, r = srv.post("/v1/completions", body(p))
                self.assertEqual(status, 200, r)
                alone = self.greedy(p, n=12)
                self.assertEqual(r["choices"][0]["text"], alone["choices"][0]["text"])
                self.assertEqual(r["choices"][0]["logprobs"], alone["choices"][0]["logprobs"])
            results = self.concurrently(3, lambda i: srv.post("/v1/completions", body(PROMPTS[i])))
            for i in range(3):
                self.assertEqual(results[i][0], 200, results[i][1])
                self.assert_same_greedy(self.greedy(PROMPTS[i], n=12), results[i][1], f"cpu-split prompt {i}")
        finally:
            self.assertEqual(srv.close(), 0, srv.read_log())
        # and with 3 of every layer's 8 experts on the "device": the routed pairs split between the
        # two halves in every step (batched too); the same tokens except at near-ties
        srv = Server(self.model, "--device", "cpu-split", "--gpu-experts", 3, "--max-batch-size", 4,
                     log_path=self.path("split-experts.log"))
        try:
            results = self.concurrently(3, lambda i: srv.post("/v1/completions", {"prompt": PROMPTS[i], "max_tokens": 12,
                                                                                  "temperature": 0, "logprobs": 2}))
            for i in range(3):
                self.assertEqual(results[i][0], 200, results[i][1])
                self.assert_same_greedy(self.greedy(PROMPTS[i], n=12), results[i][1], f"cpu-split + experts prompt {i}")
        finally:
            self.assertEqual(srv.close(), 0, srv.read_log())
        with open(self.path("split-experts.log")) as f:
            self.assertIn("--gpu-experts: 3 of 8 routed experts per layer", f.read())

    def test_prefix_reuse_cuts_time_to_first_token(self):
        rng = random.Random(5)
        prefix = [rng.randrange(1000, 100000) for _ in range(2048)]
        first = prefix + [rng.randrange(1000, 100000) for _ in range(40)]
        second = prefix + [rng.randrange(1000, 100000) for _ in range(40)]
        t0 = time.time()
        r1 = self.greedy(first, n=1)
        ttft1 = time.time() - t0
        t0 = time.time()
        r2 = self.greedy(second, n=1)
        ttft2 = time.time() - t0
        print(f"\nprefix reuse: 2088-token prompt {ttft1 * 1e3:.0f} ms, same 2048-token prefix again "
              f"{ttft2 * 1e3:.0f} ms ({ttft1 / ttft2:.1f}x)")
        self.assertEqual(r2["usage"]["prompt_tokens_details"]["cached_tokens"], 2048)
        self.assertEqual(r2["timings"]["prompt_n"], 40)
        self.assertLess(ttft2, ttft1)

    # --- cancellation -------------------------------------------------------------------------

    def test_disconnect_cancels_and_frees_pages(self):
        before = self.srv.metrics()['tandem_requests_finish_total{reason="cancelled"}']
        # streaming: read two events, then drop the connection
        c = self.srv.conn()
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": PROMPTS[3] * 20, "max_tokens": 3000, "temperature": 0.8, "stream": True}),
            headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        r.readline()
        r.readline()
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        self.srv.wait_idle(timeout=10)
        # not streaming: close while the server still works on it
        s = socket.create_connection((self.srv.host, self.srv.port))
        body = json.dumps({"prompt": PROMPTS[4] * 20, "max_tokens": 3000, "temperature": 0.8}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.time() + 10
        while self.srv.metrics()["tandem_requests_running"] == 0 and time.time() < deadline:
            time.sleep(0.05)
        s.close()
        m = self.srv.wait_idle(timeout=10)
        self.assertEqual(m['tandem_requests_finish_total{reason="cancelled"}'], before + 2)

    # --- hostile requests ---------------------------------------------------------------------

    def test_hostile_requests_get_4xx_and_the_server_keeps_serving(self):
        chat = "/v1/chat/completions"
        comp = "/v1/completions"
        msgs = [{"role": "user", "content": "hi"}]
        cases = [
            ("bad JSON", comp, "{not json", 400),
            ("JSON array body", comp, "[1, 2]", 400),
            ("JSON string body", comp, "\"prompt\"", 400),
            ("empty body", comp, "", 400),
            ("no messages", chat, {"model": "tiny"}, 400),
            ("empty messages", chat, {"messages": []}, 400),
            ("messages not a list", chat, {"messages": "hi"}, 400),
            ("message not an object", chat, {"messages": ["hi"]}, 400),
            ("unknown role", chat, {"messages": [{"role": "wizard", "content": "hi"}]}, 400),
            ("content a number", chat, {"messages": [{"role": "user", "content": 5}]}, 400),
            ("content part of an image", chat, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
            ("no prompt", comp, {"max_tokens": 3}, 400),
            ("prompt a number", comp, {"prompt": 5}, 400),
            ("empty prompt", comp, {"prompt": ""}, 400),
            ("prompt ids out of vocabulary", comp, {"prompt": [1, 2, 999999999]}, 400),
            ("negative token id", comp, {"prompt": [1, -2]}, 400),
            ("negative max_tokens", comp, {"prompt": "a", "max_tokens": -1}, 400),
            ("zero max_tokens", comp, {"prompt": "a", "max_tokens": 0}, 400),
            ("max_tokens a string", comp, {"prompt": "a", "max_tokens": "ten"}, 400),
            ("max_tokens 1e400", comp, '{"prompt": "a", "max_tokens": 1e400}', 400),
            ("max_tokens 2^64", comp, '{"prompt": "a", "max_tokens": 18446744073709551616}', 400),
            ("max_tokens fractional", comp, {"prompt": "a", "max_tokens": 2.5}, 400),
            ("temperature negative", comp, {"prompt": "a", "temperature": -1}, 400),
            ("temperature a string", comp, {"prompt": "a", "temperature": "hot"}, 400),
            ("top_p zero", comp, {"prompt": "a", "top_p": 0}, 400),
            ("n = 200", comp, {"prompt": "a", "n": 200}, 400),
            ("n x prompts beyond the queue", comp, {"prompt": ["a", "b"], "n": 40}, 400),
            ("a number in a prompt list", comp, {"prompt": ["a", 5]}, 400),
            ("prompt_logprobs streamed", comp, {"prompt": "a", "prompt_logprobs": 1, "stream": True}, 400),
            ("max_tokens 0 without echo", comp, {"prompt": "a", "max_tokens": 0, "echo": False}, 400),
            ("stop a number", comp, {"prompt": "a", "stop": 3}, 400),
            ("stream a string", comp, {"prompt": "a", "stream": "yes"}, 400),
            ("top_logprobs 50", chat, {"messages": msgs, "logprobs": True, "top_logprobs": 50}, 400),
            ("invalid UTF-8", comp, b'{"prompt": "\xff\xfe bad"}', 400),
            ("deeply nested JSON", comp, "[" * 100000 + "]" * 100000, 400),
            # nested inside fields that are copied (a copy recurses per level: the stack); the
            # body check refuses the first two, the arguments string stays text (then too long)
            ("deeply nested tools", chat, '{"messages": [{"role": "user", "content": "x"}], "tools": ' + "[" * 200000
             + "]" * 200000 + "}", 400),
            ("deeply nested schema", comp, '{"prompt": "a", "response_format": {"type": "json_schema", "json_schema": '
             '{"schema": {"const": ' + "[" * 200000 + "]" * 200000 + "}}}}", 400),
            ("deeply nested tool arguments", chat, {"messages": [msgs[0], {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": "[" * 200000 + "]" * 200000}}]}]}, 400),
            ("tool_choice type a number", chat, {"messages": msgs, "tools": [{"type": "function", "function": {"name": "f"}}],
                                                 "tool_choice": {"type": 5}}, 400),
            ("prompt longer than the context", comp, {"prompt": [100] * 9000, "max_tokens": 2}, 400),
            ("unknown model", comp, {"prompt": "a", "model": "gpt-17"}, 404),
            ("unknown route", "/v1/engines", {"prompt": "a"}, 404),
            ("10 MB body", comp, "{\"prompt\": \"" + "a" * (10 << 20) + "\"}", 413),
            ("logit_bias a list", comp, {"prompt": "a", "logit_bias": [1, 2]}, 400),
            ("logit_bias key not an id", comp, {"prompt": "a", "logit_bias": {"x": 1}}, 400),
            ("logit_bias value 500", comp, {"prompt": "a", "logit_bias": {"5": 500}}, 400),
            ("logit_bias id out of vocabulary", comp, {"prompt": "a", "logit_bias": {"999999999": 1}}, 400),
            ("response_format a string", chat, {"messages": msgs, "response_format": "json"}, 400),
            ("response_format unknown type", chat, {"messages": msgs, "response_format": {"type": "yaml"}}, 400),
            ("json_schema without a schema", chat, {"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400),
            ("json_schema unknown type", chat, {"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "thing"}}}}, 400),
            ("json_schema $ref to nothing", chat, {"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "#/$defs/a"}}}}, 400),
        ]
        for name, path, body, expected in cases:
            with self.subTest(name):
                status, r = self.srv.post(path, body)
                self.assertEqual(status, expected, f"{name}: {r!r:.300}")
                self.assertIn("message", r["error"])
                self.assertEqual(r["error"]["code"], expected)
        # unknown fields are ignored
        status, r = self.srv.post(comp, {"prompt": "a", "max_tokens": 2, "frobnicate": {"x": [1]}, "user": "u"})
        self.assertEqual(status, 200, r)
        # a client that sends half a body and leaves, and one that sends garbage
        s = socket.create_connection((self.srv.host, self.srv.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\"")
        s.close()
        s = socket.create_connection((self.srv.host, self.srv.port))
        s.sendall(b"\x00\x01\x02 GARBAGE \r\n\r\n")
        s.close()
        status, _, _ = self.srv.request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(self.greedy("still there?", n=2)["choices"][0]["finish_reason"], "length")
        self.assertTrue(self.srv.alive())

    # --- soak ---------------------------------------------------------------------------------

    def test_soak_concurrent_clients_with_random_disconnects(self):
        rng = random.Random(11)
        plans = []
        for i in range(SOAK_REQUESTS):
            chat = rng.random() < 0.5
            stream = rng.random() < 0.6
            drop = rng.random() < 1 / 3
            prompt = rng.choice(PROMPTS) + " " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta"])
                                                           for _ in range(rng.randrange(0, 60)))
            # a quarter of them shaped: a response format, a logit bias and a repetition penalty
            shaped = rng.random() < 0.25
            # some with two choices (completions: with the prompt echoed and its logprobs)
            multi = rng.random() < 0.15
            n, temp = rng.randrange(1, 32), rng.random()
            # a third of the chats through Anthropic's Messages API or the Responses API instead
            api = rng.choice(["chat", "chat", "chat", "chat", "messages", "responses"]) if chat else "completions"
            plans.append((chat, stream, drop, prompt, n, temp, shaped, multi, api))
        schema = {"type": "object", "properties": {"n": {"type": "integer"}, "t": {"enum": ["a", "b"]}},
                  "required": ["n", "t"]}
        formats = [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}]
        errors, completed, dropped, documents = [], [0], [0], [0]
        lock = threading.Lock()

        def one(plan):
            chat, stream, drop, prompt, n, temp, shaped, multi, api = plan
            if api != "chat" and api != "completions":
                return one_other_api(plan)
            path = "/v1/chat/completions" if chat else "/v1/completions"
            body = {"max_tokens": n, "temperature": temp}
            body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
            if shaped:
                body.update(response_format=formats[n % 2], logit_bias={str(100 + n): 3}, repetition_penalty=1.1)
            k = 2 if multi else 1
            if multi:
                body.update(n=2) if chat else body.update(n=2, echo=True, logprobs=1)
            if drop:
                return hang_up(path, dict(body, stream=stream, max_tokens=n + 200), stream)
            if stream:
                status, events, done = self.srv.stream(path, body)
                ok = status == 200 and done and events and sorted(
                    c["index"] for e in events for c in e["choices"]
                    if c.get("finish_reason") in ("stop", "length")) == list(range(k))
            else:
                status, r = self.srv.post(path, body)
                ok = status == 200 and len(r["choices"]) == k and \
                    all(c["finish_reason"] in ("stop", "length") for c in r["choices"]) and \
                    r["usage"]["completion_tokens"] <= n * k and \
                    isinstance(r["choices"][0]["message" if chat else "text"], (dict, str))
                if ok and multi and not chat:  # the echo, and a logprob for every prompt token but the first
                    lp = r["choices"][1]["logprobs"]
                    ok = r["choices"][1]["text"].startswith(prompt) and lp["token_logprobs"][0] is None and \
                        len(lp["tokens"]) >= r["usage"]["prompt_tokens"] and \
                        all(x <= 0 for x in lp["token_logprobs"][1:r["usage"]["prompt_tokens"]])
                if ok and shaped and r["choices"][0]["finish_reason"] == "stop":  # a whole document
                    text = r["choices"][0]["message"]["content"] if chat else r["choices"][0]["text"]
                    ok = isinstance(json.loads(text), dict)
                    with lock:
                        documents[0] += 1
            with lock:
                if ok:
                    completed[0] += 1
                else:
                    errors.append((plan, status))

        def hang_up(path, body, stream):
            c = self.srv.conn(60)
            c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            try:
                if stream:  # leave after the first event (or after a while in the queue)
                    r = c.getresponse()
                    r.readline()
                else:
                    time.sleep(rng.random() * 0.2)
            except socket.timeout:
                pass
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            with lock:
                dropped[0] += 1

        def one_other_api(plan):
            _, stream, drop, prompt, n, temp, _, _, api = plan
            if api == "messages":
                path, limit = "/v1/messages", "max_tokens"
                body = {"messages": [{"role": "user", "content": prompt}], "temperature": min(temp, 1.0)}
            else:
                path, limit = "/v1/responses", "max_output_tokens"
                body = {"input": prompt, "temperature": temp}
            if drop:
                return hang_up(path, dict(body, stream=stream, **{limit: n + 200}), stream)
            body[limit] = n
            if stream:
                status, events, _ = self.srv.stream(path, body)
                if api == "messages":
                    ok = status == 200 and events[-1]["type"] == "message_stop" and \
                        events[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens")
                else:
                    ok = status == 200 and events[-1]["type"] in ("response.completed", "response.incomplete")
            else:
                status, r = self.srv.post(path, body)
                if api == "messages":
                    ok = status == 200 and r["type"] == "message" and r["usage"]["output_tokens"] <= n and \
                        r["stop_reason"] in ("end_turn", "max_tokens")
                else:
                    ok = status == 200 and r["status"] in ("completed", "incomplete") and r["usage"]["output_tokens"] <= n
            with lock:
                if ok:
                    completed[0] += 1
                else:
                    errors.append((plan, status))

        def worker(k):
            for i in range(k, len(plans), 16):
                try:
                    one(plans[i])
                except Exception as e:  # noqa: BLE001 - every failure is collected and reported
                    with lock:
                        errors.append((plans[i], repr(e)))

        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        m = self.srv.wait_idle(timeout=30)
        print(f"\nsoak: {len(plans)} requests from 16 clients in {elapsed:.0f} s: {completed[0]} completed, "
              f"{dropped[0]} dropped by the client ({documents[0]} whole JSON documents checked); "
              f"pages used {m['tandem_kv_pages_used']:.0f}, "
              f"cached {m['tandem_kv_pages_cached']:.0f}")
        self.assertEqual(errors, [])
        self.assertEqual(completed[0] + dropped[0], len(plans))
        self.assertTrue(self.srv.alive())


class ServeLimitsTest(TempDirTestCase):
    """API keys and the queue limit, on servers of their own."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf")

    def test_api_key(self):
        srv = Server(self.model, "--api-key", "sekret", log_path=self.path("key.log"))
        try:
            body = {"prompt": "a", "max_tokens": 2}
            self.assertEqual(srv.post("/v1/completions", body)[0], 401)
            status, r = srv.post("/v1/completions", body, headers={"Authorization": "Bearer wrong"})
            self.assertEqual(status, 401)
            self.assertEqual(r["error"]["type"], "authentication_error")
            self.assertEqual(srv.post("/v1/completions", body, headers={"Authorization": "Bearer sekret"})[0], 200)
            self.assertEqual(srv.request("GET", "/v1/models")[0], 401)
            self.assertEqual(srv.request("GET", "/health")[0], 200)
        finally:
            self.assertEqual(srv.close(), 0)

    def test_chat_template_option(self):
        tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
        srv = Server(self.model, "--chat-template", tmpl, log_path=self.path("tmpl.log"))
        try:
            want = srv.post("/tokenize", {"content": "<user>Hi<assistant>"})[1]["tokens"]
            status, r = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
            self.assertEqual(status, 200, r)
            self.assertEqual(r["usage"]["prompt_tokens"], len(want))
        finally:
            self.assertEqual(srv.close(), 0)
        p = run([TANDEM, "serve", "-m", self.model, "--port", 0, "--chat-template", "{% if %}"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--chat-template:", p.stderr)

    def test_reasoning_blocks_and_the_anthropic_client(self):
        # a template that opens the reasoning block: what the model writes is thinking
        tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant><think>\n"
        srv = Server(self.model, "--chat-template", tmpl, log_path=self.path("think.log"))
        try:
            body = {"max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
            status, m = srv.post("/v1/messages", body)
            self.assertEqual(status, 200, m)
            self.assertEqual(m["content"][0]["type"], "thinking")
            self.assertTrue(m["content"][0]["thinking"])
            status, events, _ = srv.stream("/v1/messages", body)
            starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
            self.assertEqual(starts, [b["type"] for b in m["content"]])
            thought = "".join(e["delta"].get("thinking", "") for e in events if e["type"] == "content_block_delta")
            self.assertEqual(thought, m["content"][0]["thinking"])
            self.assertIn("signature_delta", [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"])
            # the Responses API: a reasoning item, streamed as reasoning_text deltas
            status, r = srv.post("/v1/responses", {"input": "Hi", "max_output_tokens": 8, "temperature": 0})
            self.assertEqual(status, 200, r)
            self.assertEqual(r["output"][0]["type"], "reasoning")
            self.assertEqual(r["output"][0]["content"][0]["text"], m["content"][0]["thinking"])
            status, events, _ = srv.stream("/v1/responses", {"input": "Hi", "max_output_tokens": 8, "temperature": 0})
            self.assertEqual("".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta"),
                             r["output"][0]["content"][0]["text"])
            strip = lambda out: [{k: v for k, v in o.items() if k != "id"} for o in out]  # noqa: E731
            self.assertEqual(strip(events[-1]["response"]["output"]), strip(r["output"]))
        finally:
            self.assertEqual(srv.close(), 0)
        # the official Anthropic SDK, as Claude Code uses it, with an API key
        srv = Server(self.model, "--api-key", "k-anthropic", log_path=self.path("anthropic.log"))
        try:
            p = subprocess.run([NODE, os.path.join(HERE, "js", "anthropic_client.mjs"), f"http://{srv.host}:{srv.port}",
                                "k-anthropic"], capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, NODE_PATH=NPM))
            print(p.stdout)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            self.assertEqual(srv.close(), 0)

    def test_full_queue_answers_429_with_retry_after(self):
        srv = Server(self.model, "--max-batch-size", 1, "--max-queue", 1, log_path=self.path("queue.log"))
        try:
            # one running (streaming, held open), one waiting, then the next is refused
            c = srv.conn()
            c.request("POST", "/v1/completions", body=json.dumps(
                {"prompt": "a b c", "max_tokens": 4000, "temperature": 1, "stream": True}),
                headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.readline()
            waiting = threading.Thread(target=lambda: srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2}))
            waiting.start()
            deadline = time.time() + 10
            while srv.metrics()["tandem_requests_waiting"] < 1 and time.time() < deadline:
                time.sleep(0.05)
            status, hdrs, body = srv.request("POST", "/v1/completions", {"prompt": "y", "max_tokens": 2})
            self.assertEqual(status, 429, body)
            self.assertIn("retry-after", hdrs)
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            waiting.join()
            srv.wait_idle()
            self.assertEqual(srv.metrics()["tandem_requests_rejected_total"], 1)
        finally:
            self.assertEqual(srv.close(), 0)

    def test_openai_node_client(self):
        srv = Server(self.model, "--api-key", "k-123", "--model-name", "tandem-tiny", log_path=self.path("js.log"))
        try:
            p = subprocess.run([NODE, os.path.join(HERE, "js", "openai_client.mjs"),
                                f"http://{srv.host}:{srv.port}/v1", "k-123", "tandem-tiny"],
                               capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, NODE_PATH=NPM))
            print(p.stdout)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            self.assertEqual(srv.close(), 0)


if __name__ == "__main__":
    unittest.main()
