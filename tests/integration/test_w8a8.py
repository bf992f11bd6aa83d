"""W8A8 checkpoints (msModelSlim and compressed-tensors) end to end: synthetic folders with the
weights of the BF16 folder of the same seed, `tandem eval` bounds against BF16 over >= 1,000
positions, the seed's merged weight set (W8A8 dense parts + Q4_K_M experts) against the same
pair joined without merging, and broken folders giving one clear error line."""
import json
import os
import shutil
import struct
import unittest

from common import THREADS, TANDEM, TempDirTestCase, run, run_json

PROMPT = "785,6722,315,9625,374"


def st_set_zero(folder, tensor):
    """Zeroes the bytes of one tensor in a safetensors folder (in place)."""
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        shard = os.path.join(folder, json.load(f)["weight_map"][tensor])
    with open(shard, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        begin, end = json.loads(f.read(n))[tensor]["data_offsets"]
        f.seek(8 + n + begin)
        f.write(b"\0" * (end - begin))


class W8A8Test(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bf16 = cls.make_model("bf16", "--format", "hf")
        cls.mss = cls.make_model("w8a8-mss", "--format", "hf-w8a8-msmodelslim")
        cls.ct = cls.make_model("w8a8-ct", "--format", "hf-w8a8-ct")

    def eval(self, ref, model, *extra):
        return run_json([TANDEM, "eval", "--ref", ref, "-m", model, "--positions", 1024, "--seq-len", 256,
                         "--threads", THREADS, "--json", *extra])

    def assert_error(self, cmd, *words):
        p = run(cmd, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        err = p.stderr.strip().splitlines()[-1]
        for w in words:
            self.assertIn(w, err)

    def test_both_formats_stay_close_to_bf16(self):
        # measured on the tiny synthetic model: msModelSlim 94.2% / mean KL 0.059, compressed-tensors
        # 96.5% / 0.020 (Q8_0 GGUF of the same weights: 95.9% / 0.024)
        for name, path in (("msmodelslim", self.mss), ("compressed-tensors", self.ct)):
            j = self.eval(self.bf16, path)
            print(f"{name} vs BF16: top-1 {100 * j['top1_agreement']:.2f}%, mean KL {j['mean_kl']:.4f}, "
                  f"p99 {j['p99_kl']:.4f} over {j['positions']} positions")
            self.assertGreaterEqual(j["positions"], 1000)
            self.assertGreaterEqual(j["top1_agreement"], 0.90, name)
            self.assertLessEqual(j["mean_kl"], 0.10, name)

    def test_eval_tells_different_models_apart(self):
        other = self.make_model("bf16-seed7", "--format", "hf", "--seed", 7)
        j = self.eval(self.bf16, other)
        self.assertLess(j["top1_agreement"], 0.2)
        self.assertGreater(j["mean_kl"], 1.0)
        same = self.eval(self.bf16, self.bf16)
        self.assertEqual(same["top1_agreement"], 1.0)
        self.assertLess(same["mean_kl"], 1e-9)

    def test_inspect_names_the_quantization(self):
        for path, want in ((self.mss, "msModelSlim W8A8"), (self.ct, "compressed-tensors int8")):
            j = run_json([TANDEM, "inspect", "--json", path])
            self.assertEqual(j["quantization"], want)
            types = {t["name"]: t["type"] for t in j["tensors"]}
            self.assertEqual(types["blk.0.attn_q.weight"], "I8")
            self.assertEqual(types["blk.0.ffn_gate_exps.weight"], "I8")
            self.assertEqual(types["blk.0.ffn_gate_inp.weight"], "F32")  # the router stays float
        j = run_json([TANDEM, "inspect", "--json", self.mss])
        types = {t["name"]: t["type"] for t in j["tensors"]}
        self.assertEqual(types["blk.0.attn_q.deq_scale"], "I64")  # MindIE's float bits in int64
        self.assertEqual(types["blk.1.attn_q.deq_scale"], "F32")
        self.assertIn("blk.0.attn_norm.bias", types)

    def test_merged_folder_equals_the_direct_join(self):
        """msModelSlim dense parts + the Q4_K_M experts of the same seed: `merge`, then run; the same
        two inputs joined in memory (`--experts`) give bit-identical logits."""
        q4 = self.make_model("q4km.gguf", "--quant", "q4_k_m")
        out = self.path("merged")
        shutil.rmtree(out, ignore_errors=True)
        run([TANDEM, "merge", "--safetensors", self.mss, "--gguf", q4, "--out", out])
        with open(os.path.join(out, "quant_model_description.json")) as f:
            desc = json.load(f)
        self.assertFalse([k for k in desc if ".experts." in k], "expert entries dropped with the experts")
        a, b = self.path("merged.bin"), self.path("joined.bin")
        ra = run_json([TANDEM, "run", "-m", out, "--prompt-ids", PROMPT, "-n", 8, "--json", "--logits-out", a])
        rb = run_json([TANDEM, "run", "-m", self.mss, "--experts", q4, "--prompt-ids", PROMPT, "-n", 8, "--json",
                       "--logits-out", b])
        self.assertEqual(ra["ids"], rb["ids"])
        with open(a, "rb") as fa, open(b, "rb") as fb:
            self.assertEqual(fa.read(), fb.read())
        j = run_json([TANDEM, "inspect", "--json", out])
        self.assertEqual(j["format"], "merged")
        types = {t["name"]: t["type"] for t in j["tensors"]}
        self.assertEqual(types["blk.0.attn_q.weight"], "I8")
        self.assertIn(types["blk.0.ffn_gate_exps.weight"], ("Q4_K", "Q5_0", "Q8_0"))

    def test_convert_to_gguf(self):
        """W8A8 folders to GGUF (int8 weights dequantized with their scales, the parameters and the
        compensated norm bias left out), then against BF16: closer than the W8A8 activations were."""
        for name, path in (("msmodelslim", self.mss), ("compressed-tensors", self.ct)):
            out = self.path(f"{name}-f16.gguf")
            run([TANDEM, "convert", "-m", path, "--quant", "f16", "-o", out, "--threads", THREADS])
            j = self.eval(self.bf16, out)
            print(f"{name} -> f16 GGUF vs BF16: top-1 {100 * j['top1_agreement']:.2f}%, mean KL {j['mean_kl']:.4f}")
            self.assertGreaterEqual(j["top1_agreement"], 0.95, name)
            self.assertLessEqual(j["mean_kl"], 0.03, name)
        # a norm bias that the next linears do not take back is a bias GGUF cannot hold: refused
        d = self.copy(self.mss, "uncompensated")
        st_set_zero(d, "model.layers.1.self_attn.k_proj.quant_bias")
        p = run([TANDEM, "convert", "-m", d, "--quant", "f16", "-o", self.path("x.gguf")], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("blk.1.attn_k.weight has an output bias", p.stderr)
        self.assertFalse(os.path.exists(self.path("x.gguf")))

    def copy(self, src, name):
        d = self.path(name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        return d

    def edit_json(self, path, fn):
        with open(path) as f:
            j = json.load(f)
        fn(j)
        with open(path, "w") as f:
            json.dump(j, f)

    def test_broken_descriptions_are_clear_errors(self):
        run_cmd = lambda d: [TANDEM, "run", "-m", d, "--prompt-ids", PROMPT, "-n", 1]
        # an entry naming a tensor that is not there, and one with an unsupported scheme
        d = self.copy(self.mss, "bad-desc")
        desc = os.path.join(d, "quant_model_description.json")

        def absent(j):
            j["model.layers.0.self_attn.q_proj.smooth_factor"] = "W8A8"
            j["model.layers.0.self_attn.k_proj.weight"] = "W4A8_DYNAMIC"
        self.edit_json(desc, absent)
        self.assert_error(run_cmd(d), "quant_model_description.json", "q_proj.smooth_factor",
                          "not in the safetensors files", "W4A8_DYNAMIC")
        # an int8 weight whose description says FLOAT
        d = self.copy(self.mss, "float-int8")
        self.edit_json(os.path.join(d, "quant_model_description.json"),
                       lambda j: j.__setitem__("model.layers.1.self_attn.o_proj.weight", "FLOAT"))
        self.assert_error(run_cmd(d), "o_proj.weight (I8)", "FLOAT tensors are not F32/F16/BF16")
        # a static W8A8 weight without its deq_scale
        d = self.copy(self.mss, "no-deq")
        self.edit_json(os.path.join(d, "quant_model_description.json"),
                       lambda j: j.pop("model.layers.0.self_attn.v_proj.deq_scale"))
        idx = os.path.join(d, "model.safetensors.index.json")
        self.edit_json(idx, lambda j: j["weight_map"].pop("model.layers.0.self_attn.v_proj.deq_scale"))
        self.assert_error(run_cmd(d), "v_proj.deq_scale")
        # compressed-tensors: static activations, another method, an int8 layer in the ignore list
        for name, fn, words in (
            ("ct-static", lambda q: q["config_groups"]["group_0"]["input_activations"].__setitem__("dynamic", False),
             ["static activation scales"]),
            ("ct-awq", lambda q: q.__setitem__("quant_method", "awq"), ["quant_method \"awq\" is not supported"]),
            ("ct-ignored", lambda q: q["ignore"].append("re:.*self_attn.q_proj$"), ["in the ignore list", "q_proj.weight"]),
        ):
            d = self.copy(self.ct, name)
            self.edit_json(os.path.join(d, "config.json"), lambda j: fn(j["quantization_config"]))
            self.assert_error(run_cmd(d), *words)
        # int8 tensors with neither a description nor a quantization_config
        d = self.copy(self.ct, "ct-no-config")
        self.edit_json(os.path.join(d, "config.json"), lambda j: j.pop("quantization_config"))
        self.assert_error(run_cmd(d), "int8 tensor", "quantization_config")

    def test_experts_option_errors(self):
        self.assert_error([TANDEM, "run", "-m", self.mss, "--experts", self.path("nope.gguf"), "--prompt-ids", PROMPT],
                          "nope.gguf")
        # a GGUF of another shape: the bound shapes disagree
        other = self.make_model("other.gguf", "--expert-ff", 128)
        self.assert_error([TANDEM, "run", "-m", self.mss, "--experts", other, "--prompt-ids", PROMPT], "ffn_gate_exps")


if __name__ == "__main__":
    unittest.main()
