"""The tandem binary as users see it: make-test-model, inspect, run, and bad input (one clear
error line and a non-zero exit code, never a crash)."""
import json
import os
import platform
import re
import struct
import unittest

from common import TANDEM, THREADS, TempDirTestCase, gguf_str, run, run_json, write_gguf

PROMPT = "785,6722,315,9625,374"


class Cli(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf", "--layers", "1")

    def assert_error(self, cmd, *expect, code=1):
        p = run(cmd, check=False)
        self.assertEqual(p.returncode, code, f"{cmd}: exit {p.returncode}\n{p.stderr}")
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"expected one error line, got:\n{p.stderr}")
        self.assertTrue(lines[0].startswith("tandem: error: "), lines[0])
        for e in expect:
            self.assertIn(e, lines[0])
        return lines[0]

    def test_help_on_every_command(self):
        for sub in ([], ["run"], ["inspect"], ["make-test-model"]):
            p = run([TANDEM, *sub, "--help"])
            self.assertIn("Usage", p.stdout)

    def test_inspect(self):
        out = run([TANDEM, "inspect", self.model]).stdout
        self.assertIn("qwen3moe", out)
        self.assertIn("blk.0.ffn_down_exps.weight", out)
        self.assertIn("151936 tokens", out)
        j = run_json([TANDEM, "inspect", "--json", self.model])
        self.assertEqual(j["hparams"]["n_expert"], 8)
        self.assertEqual(j["hparams"]["head_dim"], 64)
        self.assertEqual(j["tokenizer"]["eos"], 151645)
        self.assertTrue(j["tokenizer"]["chat_template"])
        self.assertLess(j["active_bytes_per_token"], j["total_bytes"])
        self.assertEqual(sum(t["bytes"] for t in j["tensors"]), j["total_bytes"])

    def test_presets_and_shape_flags(self):
        m = self.make_model("shaped.gguf", "--layers", "3", "--hidden", "128", "--heads", "4", "--kv-heads", "1",
                            "--head-dim", "48", "--experts", "4", "--experts-used", "3", "--expert-ff", "64",
                            "--quant", "q8_0")
        h = run_json([TANDEM, "inspect", "--json", m])["hparams"]
        self.assertEqual((h["n_layer"], h["n_embd"], h["n_head"], h["n_head_kv"], h["head_dim"]), (3, 128, 4, 1, 48))
        self.assertEqual((h["n_expert"], h["n_expert_used"], h["n_ff_exp"]), (4, 3, 64))
        out = run_json([TANDEM, "run", "-m", m, "--prompt-ids", PROMPT, "-n", 4, "--json", "--ignore-eos"])
        self.assertEqual(len(out["ids"]), 4)

    def test_q4_k_m_mix_like_llama_cpp(self):
        types = lambda m: {t["name"]: t["type"] for t in run_json([TANDEM, "inspect", "--json", m])["tensors"]}
        t = types(self.make_model("mix.gguf", "--quant", "q4_k_m", "--layers", "8", "--experts", "16",
                                  "--hidden", "256", "--expert-ff", "256", "--vocab", "152000"))
        self.assertEqual(t["output.weight"], "Q6_K")
        self.assertEqual(t["token_embd.weight"], "Q4_K")
        self.assertEqual(t["blk.0.ffn_gate_inp.weight"], "F32")
        self.assertEqual(t["blk.0.attn_norm.weight"], "F32")
        # more bits for layers i < n/8, i >= 7n/8 and every third in between (n = 8: 0, 3, 6, 7)
        more = [i for i in range(8) if t[f"blk.{i}.ffn_down_exps.weight"] == "Q6_K"]
        self.assertEqual(more, [0, 3, 6, 7])
        self.assertEqual([i for i in range(8) if t[f"blk.{i}.attn_v.weight"] == "Q6_K"], more)
        self.assertEqual(t["blk.1.ffn_up_exps.weight"], "Q4_K")
        # rows of 160 are not a multiple of 256: Q4_K falls back to Q5_0, Q6_K to Q8_0
        f = types(self.make_model("fallback.gguf", "--quant", "q4_k_m", "--layers", "1", "--hidden", "160"))
        self.assertEqual(f["blk.0.attn_q.weight"], "Q5_0")
        self.assertEqual(f["output.weight"], "Q8_0")
        self.assertEqual(f["blk.0.ffn_down_exps.weight"], "Q6_K")  # its rows are expert-ff (256) wide

    def test_split_model_runs_like_single_file(self):
        single = self.make_model("s1.gguf", "--layers", "1", "--seed", "7")
        self.make_model("s3.gguf", "--layers", "1", "--seed", "7", "--split", "3")
        first = self.path("s3-00001-of-00003.gguf")
        self.assertTrue(os.path.exists(first))
        a = run_json([TANDEM, "run", "-m", single, "--prompt-ids", PROMPT, "-n", 6, "--json", "--ignore-eos"])
        b = run_json([TANDEM, "run", "-m", first, "--prompt-ids", PROMPT, "-n", 6, "--json", "--ignore-eos"])
        self.assertEqual(a["ids"], b["ids"])
        self.assertEqual(run_json([TANDEM, "inspect", "--json", first])["n_files"], 3)

    def test_seed_changes_weights_and_is_reproducible(self):
        a = self.make_model("seed1.gguf", "--layers", "1", "--seed", "1")
        b = self.make_model("seed1b.gguf", "--layers", "1", "--seed", "1", "--threads", "1")
        c = self.make_model("seed2.gguf", "--layers", "1", "--seed", "2")
        with open(a, "rb") as fa, open(b, "rb") as fb, open(c, "rb") as fc:
            da, db, dc = fa.read(), fb.read(), fc.read()
        self.assertEqual(da, db)  # same seed, different thread count: same bytes
        self.assertNotEqual(da, dc)

    def test_run_greedy_is_deterministic_and_sampling_uses_seed(self):
        base = [TANDEM, "run", "-m", self.model, "--prompt-ids", PROMPT, "-n", 8, "--json", "--ignore-eos"]
        a, b = run_json(base), run_json(base + ["--threads", "1"])
        self.assertEqual(a["ids"], b["ids"])  # thread count does not change results
        self.assertIn("decode_tok_s", a["timings"])
        s1 = run_json(base + ["--temp", "5", "--seed", "1"])
        s2 = run_json(base + ["--temp", "5", "--seed", "1"])
        self.assertEqual(s1["ids"], s2["ids"])

    def test_run_json_schema(self):
        schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"},
                                                   "tag": {"enum": ["a", "b"]}},
                  "required": ["n", "ok", "tag"], "additionalProperties": False}
        path = self.path("schema.json")
        with open(path, "w") as f:
            json.dump(schema, f)
        for i, arg in enumerate([path, json.dumps(schema)]):
            r = run_json([TANDEM, "run", "-m", self.model, "-p", "JSON please:", "-n", 500, "--temp", "0.9",
                          "--seed", 5 + i, "--json", "-j", arg])
            self.assertEqual(r["finish_reason"], "eos", r["text"][-200:])
            doc = json.loads(r["text"])
            self.assertEqual(set(doc), {"n", "ok", "tag"})
            self.assertIsInstance(doc["n"], int)
            self.assertIsInstance(doc["ok"], bool)
            self.assertIn(doc["tag"], ["a", "b"])
        for bad, what in [('{"type": "wat"}', "unknown type 'wat'"), (self.path("none.json"), "neither a JSON object")]:
            p = run([TANDEM, "run", "-m", self.model, "-p", "x", "-n", 2, "-j", bad], check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn(what, p.stderr)

    def test_missing_file(self):
        self.assert_error([TANDEM, "inspect", self.path("nope.gguf")], "nope.gguf", "cannot open")
        self.assert_error([TANDEM, "run", "-m", self.path("nope.gguf"), "--prompt-ids", "1"], "nope.gguf")

    def test_not_gguf_and_truncated(self):
        junk = self.path("junk.gguf")
        with open(junk, "wb") as f:
            f.write(b"hello world, not a model" * 10)
        self.assert_error([TANDEM, "inspect", junk], "not a GGUF file")
        with open(self.model, "rb") as f:
            data = f.read()
        for n in (3, 30, 5000, len(data) // 2, len(data) - 100):
            cut = self.path(f"cut{n}.gguf")
            with open(cut, "wb") as f:
                f.write(data[:n])
            self.assert_error([TANDEM, "inspect", cut], "cut", "truncated")

    def test_wrong_architecture(self):
        p = self.path("llama.gguf")
        write_gguf(p, [("general.architecture", 8, gguf_str("llama"))], [])
        self.assert_error([TANDEM, "inspect", p], "architecture 'llama' is not supported")

    def test_unknown_quant_type(self):
        p = self.path("iq2.gguf")
        write_gguf(p, [("general.architecture", 8, gguf_str("qwen3moe"))],
                   [("token_embd.weight", [256, 4], 16, b"\0" * 66 * 4)])
        self.assert_error([TANDEM, "inspect", p], "token_embd.weight", "IQ2_XXS", "not support")

    def test_missing_metadata_and_tensor(self):
        p = self.path("nometa.gguf")
        write_gguf(p, [("general.architecture", 8, gguf_str("qwen3moe"))], [])
        self.assert_error([TANDEM, "inspect", p], "missing metadata", "qwen3moe.context_length")

    def test_prompt_ids_out_of_vocabulary(self):
        self.assert_error([TANDEM, "run", "-m", self.model, "--prompt-ids", "1,151936"], "151936", "vocabulary")
        self.assert_error([TANDEM, "run", "-m", self.model, "--prompt-ids", "1,x"], "invalid token id 'x'")

    def test_n_larger_than_context(self):
        self.assert_error([TANDEM, "run", "-m", self.model, "--prompt-ids", PROMPT, "-n", "5000"], "context")
        self.assert_error([TANDEM, "run", "-m", self.model, "--prompt-ids", PROMPT, "-n", "100", "--ctx", "50"],
                          "context size 50")

    def test_make_test_model_bad_options(self):
        self.assert_error([TANDEM, "make-test-model", "-o", self.path("x.gguf"), "--quant", "q3_x"], "unknown quant")
        self.assert_error([TANDEM, "make-test-model", "-o", self.path("x.gguf"), "--preset", "huge"], "unknown preset")
        self.assert_error([TANDEM, "make-test-model", "-o", self.path("x.gguf"), "--heads", "3", "--kv-heads", "2"],
                          "invalid shape")
        self.assert_error([TANDEM, "make-test-model", "-o", "/nonexistent/dir/x.gguf", "--layers", "1"],
                          "/nonexistent/dir/x.gguf")

    def test_fast_kernels_give_the_reference_forwards_tokens(self):
        """The ISA kernels (the best table, and AVX2) against the scalar reference forward (TANDEM_ISA=generic):
        same greedy tokens up to the reference's first near-tie (top-2 margin < 0.05)."""
        prompt = ",".join(str((i * 7919 + 13) % 151000) for i in range(24))  # > 4 tokens: GEMM tiles
        for quant in ("f16", "q8_0", "q4_k_m", "q5_k_m", "q4_0", "q5_0"):
            m = self.make_model(f"fast-{quant}.gguf", "--quant", quant, "--layers", "2")
            cmd = [TANDEM, "run", "-m", m, "--prompt-ids", prompt, "-n", 24, "--json", "--ignore-eos", "--top", 2]
            ref = run_json(cmd, env={"TANDEM_ISA": "generic"})
            # packed 16-row layouts (the default), the GGUF blocks as they are, and the AVX2 tables
            # (their own packed kernels, without and with AVX-VNNI) on a CPU that has more
            for name, fast in (("packed", run_json(cmd)), ("--no-repack", run_json(cmd + ["--no-repack"])),
                               ("avx2", run_json(cmd, env={"TANDEM_ISA": "avx2"})),
                               ("avx2_vnni", run_json(cmd, env={"TANDEM_ISA": "avx2_vnni"}))):
                compared = 0
                for i, step in enumerate(ref["steps"]):
                    if step["top"][0][1] - step["top"][1][1] < 0.05:
                        break
                    self.assertEqual(fast["ids"][i], ref["ids"][i], f"{quant} {name}: step {i}")
                    self.assertAlmostEqual(fast["steps"][i]["top"][0][1], step["top"][0][1],
                                           delta=0.02 * abs(step["top"][0][1]), msg=f"{quant} {name}: step {i} top logit")
                    compared += 1
                self.assertGreater(compared, 0, quant)

    def test_bench(self):
        j = run_json([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8,16", "--gen", 3, "--json",
                      "--no-bandwidth", "--threads", THREADS])
        for key in ("8", "16"):
            self.assertGreater(j["prefill_tok_s"][key], 0)
            self.assertGreater(j["decode_tok_s"][key], 0)
            stages = j["decode_ms_per_token"][key]
            self.assertGreater(stages["attention"], 0)
            self.assertGreater(stages["experts"], 0)
            self.assertGreater(stages["lm_head"], 0)
        self.assertGreater(j["bytes_per_token"], 0)
        self.assertNotIn("batch_decode_tok_s", j)
        if platform.machine() == "x86_64":  # where the packed kernels prefetch the weights: by vendor, or as told
            self.assertIn(j["prefetch"], ("l1", "l2"))
            # the AVX-512 packed kernels' VBMI build: on Intel CPUs with avx512vbmi
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
            flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split()
            want_vbmi = j["isa"] in ("avx512", "amx") and "avx512vbmi" in flags and "GenuineIntel" in cpuinfo
            self.assertEqual(j["vbmi"], want_vbmi)
            for target in ("l1", "l2"):
                jt = run_json([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8", "--gen", 2, "--json",
                               "--no-bandwidth", "--threads", THREADS], env={"TANDEM_PREFETCH": target})
                self.assertEqual(jt["prefetch"], target)
        # --batch: each count's sequences decode in turn with the others'
        j = run_json([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8", "--gen", 3, "--json",
                      "--no-bandwidth", "--threads", THREADS, "--batch", "1,3"])
        self.assertEqual(sorted(j["batch_decode_tok_s"]), ["1", "3"])
        for v in j["batch_decode_tok_s"].values():
            self.assertGreater(v, 0)
        # what the bytes allow 3 sequences against 1: shared weights once, the union of the routings' experts
        bound = j["batch_bytes_bound_ratio"]
        self.assertAlmostEqual(bound["1"], 1.0)
        self.assertGreater(bound["3"], 1.0)
        self.assertLess(bound["3"], 3.0)
        table = run([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8", "--gen", 2, "--no-bandwidth",
                     "--batch", "2,1"]).stdout
        self.assertIn(" 2 sequences:", table)
        self.assertIn("(1.00x of 2; bytes allow 1.00x)", table.split(" 2 sequences:")[1].splitlines()[0])  # ratios to the first count
        self.assertIn("x of 2; bytes allow 0.", table.split(" 1 sequences:")[1].splitlines()[0])  # 1 of 2: below 1x
        # bad --batch: refused before the (slow) measuring starts
        self.assert_error([TANDEM, "bench", "-m", self.model, "--batch", "0"], "--batch", ">= 1")
        self.assert_error([TANDEM, "bench", "-m", self.model, "--batch", "1,x"], "--batch")
        table = run([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8", "--gen", 2, "--no-bandwidth"]).stdout
        self.assertIn("| prefill tok/s", table)
        self.assertIn("| decode tok/s", table)
        self.assert_error([TANDEM, "bench", "-m", self.model, "--threads", "0"], "--threads")
        self.assert_error([TANDEM, "bench", "-m", self.model, "--cpu-infer", "4096"], "more than", "cores")
        self.assert_error([TANDEM, "bench", "-m", self.model, "--prompt-lens", "8,x"], "prompt-lens", "invalid number")
        self.assert_error([TANDEM, "bench", "-m", self.model, "--prompt-lens", ""], "prompt-lens")  # '' only with --server

    RULES = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "rules-qwen3moe.yaml")

    def write_rules(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_inspect_rules_places_experts_on_cpu(self):
        j = run_json([TANDEM, "inspect", "--json", "--rules", self.RULES, "--gpu-mem", "8", self.model])
        devices = {t["name"]: t["device"] for t in j["tensors"]}
        for name, dev in devices.items():
            self.assertEqual(dev, "cpu" if "_exps" in name else "cuda:0", name)
        sizes = {t["name"]: t["bytes"] for t in j["tensors"]}
        placed = j["placement"]["bytes"]
        self.assertEqual(placed["cpu"], sum(b for n, b in sizes.items() if "_exps" in n))
        self.assertEqual(placed["cpu"] + placed["cuda:0"], sum(sizes.values()))
        self.assertEqual(j["placement"]["gpu_bytes_available"], [8 << 30])
        out = run([TANDEM, "inspect", "--rules", self.RULES, "--gpu-mem", "8", self.model]).stdout
        self.assertRegex(out, r"blk\.0\.ffn_up_exps\.weight .* cpu\n")
        self.assertRegex(out, r"\n  cuda:0 +[0-9.]+ [KM]iB of 8\.00 GiB available\n")

    def test_inspect_rules_auto(self):
        p = run([TANDEM, "inspect", "--json", "--rules", "auto", self.model])
        j = json.loads(p.stdout)
        self.assertIn("built-in defaults for qwen3moe", j["placement"]["rules"])
        for t in j["tensors"]:
            if "_exps" in t["name"]:
                self.assertEqual(t["device"], "cpu")
        if "no CUDA device" in p.stderr:  # this machine: everything on the cpu, with a note
            self.assertEqual(set(j["placement"]["bytes"]), {"cpu"})
        # a GPU too small for the defaults: auto placement falls back to the cpu, with a note
        p = run([TANDEM, "inspect", "--json", "--rules", "auto", "--gpu-mem", "0.00001", self.model])
        self.assertEqual(set(json.loads(p.stdout)["placement"]["bytes"]), {"cpu"})
        self.assertIn("auto placement falls back to the cpu", p.stderr)
        self.assertIn("does not fit cuda:0", p.stderr)

    def test_inspect_rules_errors(self):
        self.assert_error([TANDEM, "inspect", "--rules", self.RULES, "--gpu-mem", "0.00001", self.model],
                          "rules-qwen3moe.yaml", "does not fit cuda:0", "need 0.1", "GiB, 0.01 MiB available")
        self.assert_error([TANDEM, "inspect", "--rules", self.path("none.yaml"), self.model], "none.yaml",
                          "cannot open")
        cases = [
            ("- match: {name: '.*'}\n  device: npu:0\n", "bad1.yaml:2", "unknown device 'npu:0'"),
            ("- match: {name: '.*'}\n  device: cuda:7\n", "bad2.yaml:2", "device 'cuda:7'"),
            ("- match: {name: '.*'}\n  device: cuda:x\n", "bad3.yaml:2", "bad device index"),
            ("- match: {name: 'blk.(['}\n  device: cpu\n", "bad4.yaml:1", "bad regex"),
            ("- match: {name: '.*'}\n  device: cpu\n- match: {name: 'attn_nothing'}\n  device: cpu\n",
             "bad5.yaml:3", "matches no tensor"),
            ("- match: {name: '.*'\n  device: cpu\n", "bad6.yaml:", "YAML syntax error"),
            ("- match: {name: '^blk'}\n  device: cpu\n", "bad7.yaml", "no rule matches tensor 'token_embd.weight'"),
        ]
        for i, (text, *expect) in enumerate(cases):
            rules = self.write_rules(f"bad{i + 1}.yaml", text)
            self.assert_error([TANDEM, "inspect", "--rules", rules, "--gpu-mem", "8", self.model], *expect)

    def test_device_and_rules_options(self):
        for sub in ("run", "chat", "bench", "serve"):
            self.assertIn("--device", run([TANDEM, sub, "--help"]).stdout, sub)
        base = [TANDEM, "run", "-m", self.model, "--prompt-ids", PROMPT, "-n", 6, "--json", "--ignore-eos"]
        on_cpu = run_json(base + ["--device", "cpu"])["ids"]
        # the hybrid path with the cpu as its device half: the cpu's output to the bit
        top = ["--top", 3, "--prompt-top"]
        split, cpu = run_json(base + ["--device", "cpu-split", *top]), run_json(base + ["--device", "cpu", *top])
        split.pop("timings")
        cpu.pop("timings")
        self.assertEqual(split, cpu)
        j = run_json([TANDEM, "bench", "-m", self.model, "--device", "cpu-split", "--prompt-lens", "8", "--gen", 2,
                      "--no-bandwidth", "--json", "--project-layers", 94])
        self.assertIn("cpu-split", j["device"])
        self.assertGreater(j["decode_ms_per_layer"]["8"], 0)
        self.assertGreater(j["projected"]["8"]["decode_tok_s"], 0)
        # --gpu-experts on the cpu's device half: calibrated, placed, its pairs run "there"; greedy
        # ids as the cpu's (the synthetic logits have clear margins; the split sums in another order)
        p = run(base + ["--device", "cpu-split", "--gpu-experts", 3], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["ids"], on_cpu)
        self.assertRegex(p.stderr, r"--gpu-experts: 3 of 8 routed experts per layer on cpu-split .* calibration prompt: "
                                   r"\d+% of its routed pairs")
        self.assert_error(base + ["--device", "cpu", "--gpu-experts", 3], "--gpu-experts 3", "no device")
        # --gpu-prefill on the cpu's device half: the prompt's batch runs every routed expert "there"
        p = run(base + ["--device", "cpu-split", "--gpu-prefill", 2], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["ids"], on_cpu)
        self.assert_error(base + ["--device", "cpu", "--gpu-prefill", 64], "--gpu-prefill 64", "no device")
        p = run(base + ["--device", "cpu-split", "--gpu-prefill", -1], check=False)
        self.assertEqual(p.returncode, 2, p.stderr)  # a usage error
        self.assertIn("--gpu-prefill: a number of tokens >= 0", p.stderr)
        self.assert_error(base + ["--device", "cpu-split", "--gpu-experts", "many"], "--gpu-experts 'many'")
        all_cpu = self.write_rules("all-cpu.yaml", "- match: {name: '.*'}\n  device: cpu\n")
        self.assertEqual(run_json(base + ["--rules", all_cpu])["ids"], on_cpu)
        p = run(base + ["--device", "cuda"], check=False)
        if p.returncode == 1 and "no CUDA" in p.stderr:  # this machine has no GPU
            self.assert_error(base + ["--device", "cuda:0"], "--device cuda:0: no CUDA")
            self.assertEqual(run_json(base)["ids"], on_cpu)  # --device auto: the cpu
            self.assertEqual(run_json(base + ["--rules", "auto"])["ids"], on_cpu)
            self.assert_error(base + ["--rules", self.RULES], "rules-qwen3moe.yaml", "device 'cuda:0'")
        else:  # a GPU: the hybrid forward (greedy ids as the cpu's where margins are clear: tests/cuda)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(json.loads(p.stdout)["ids"]), 6)
            gpu_experts = self.write_rules("gpu-experts.yaml", "- match: {name: '.*'}\n  device: cuda:0\n")
            self.assert_error(base + ["--rules", gpu_experts], "ffn_", "_exps.weight is placed on cuda:0")
            split = self.write_rules("split.yaml", "- match: {name: '_exps'}\n  device: cpu\n"
                                     "- match: {name: 'attn'}\n  device: cpu\n- match: {name: '.*'}\n  device: cuda:0\n")
            self.assert_error(base + ["--rules", split], "spread over cpu, cuda:0")
        self.assert_error(base + ["--device", "npu:0"], "unknown device 'npu:0'")
        self.assert_error(base + ["--device", "cuda:x"], "bad device index")
        p = run(base + ["--device", "cpu", "--rules", all_cpu], check=False)
        self.assertEqual(p.returncode, 2, p.stderr)  # one or the other

    def test_usage_errors_exit_2(self):
        p = run([TANDEM, "run", "--bogus"], check=False)
        self.assertEqual(p.returncode, 2)
        p = run([TANDEM], check=False)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
