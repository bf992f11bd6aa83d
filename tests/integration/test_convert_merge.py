"""`tandem convert` and `tandem merge` end to end on synthetic models.

- convert: the synthetic HF BF16 folder to GGUF F16 (same greedy tokens as the folder), Q8_0 and
  Q4_K_M (the same tensor types as make-test-model's Q4_K_M of the same shapes: one set of mix
  rules); llama.cpp loading the Q4_K_M output is in test_llama_compare.
- merge: HF BF16 folder (dense parts) + GGUF Q4_K_M (routed experts) of the same seed. The exact
  check: make-test-model's `q4_k_m-exps-bf16` mix writes, independently of merge, a GGUF whose
  dense tensors are the same BF16 values and whose experts are the same Q4_K_M blocks (same seeded
  rows, same quantizer), so the merged folder must give bit-identical logits. Checkpoints that do
  not fit together give one error line listing every disagreement.
"""
import json
import math
import os
import shutil
import struct

from common import TANDEM, THREADS, TempDirTestCase, read_f32, run, run_json

PROMPT = "785,6722,315,9625,374,264,3460,1879,13,576"
SHAPE = ["--layers", "2", "--seed", "11"]


class ConvertMerge(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hf = cls.make_model("hf", "--format", "hf", *SHAPE)
        cls.q4km = cls.make_model("q4km.gguf", "--quant", "q4_k_m", *SHAPE)
        cls.ref = cls.make_model("ref.gguf", "--quant", "q4_k_m-exps-bf16", *SHAPE)

    def assert_error(self, cmd, *expect):
        p = run(cmd, check=False)
        self.assertEqual(p.returncode, 1, f"{cmd}: exit {p.returncode}\n{p.stderr}")
        lines = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith(("merge:", "convert:"))]
        self.assertEqual(len(lines), 1, f"expected one error line, got:\n{p.stderr}")
        self.assertTrue(lines[0].startswith("tandem: error: "), lines[0])
        for e in expect:
            self.assertIn(e, lines[0])
        return lines[0]

    def generate(self, model, name, n=16):
        logits = self.path(name + ".logits")
        out = run_json([TANDEM, "run", "-m", model, "--prompt-ids", PROMPT, "-n", n, "--json", "--ignore-eos",
                        "--top", 2, "--threads", THREADS, "--logits-out", logits])
        return out, read_f32(logits)

    def convert(self, src, quant, name):
        out = self.path(name)
        if not os.path.exists(out):
            p = run([TANDEM, "convert", "-m", src, "--quant", quant, "-o", out, "--threads", THREADS])
            self.assertIn("tensors", p.stderr)  # progress shown
        return out

    @staticmethod
    def types(model):
        return {t["name"]: t["type"] for t in run_json([TANDEM, "inspect", "--json", model])["tensors"]}

    @staticmethod
    def rel_diff(a, b):
        return max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a)

    def merged(self):
        out = self.path("merged")
        if not os.path.exists(out):
            p = run([TANDEM, "merge", "--safetensors", self.hf, "--gguf", self.q4km, "--out", out])
            self.assertIn("tensors", p.stderr)
        return out

    # convert

    def test_convert_f16_same_greedy_tokens(self):
        f16 = self.convert(self.hf, "f16", "conv-f16.gguf")
        for name, t in self.types(f16).items():
            self.assertEqual(t, "F32" if name.endswith(("norm.weight", "ffn_gate_inp.weight")) else "F16", name)
        a, la = self.generate(self.hf, "hf")
        b, lb = self.generate(f16, "conv-f16")
        self.assertEqual(a["ids"], b["ids"])
        self.assertLess(self.rel_diff(la, lb), 1e-2)

    def test_convert_q8_0(self):
        q8 = self.convert(self.hf, "q8_0", "conv-q8_0.gguf")
        types = self.types(q8)
        self.assertEqual(types["blk.1.ffn_down_exps.weight"], "Q8_0")
        self.assertEqual(types["output.weight"], "Q8_0")
        _, la = self.generate(self.hf, "hf-q8", n=1)
        _, lb = self.generate(q8, "conv-q8_0", n=1)
        self.assertEqual(la.index(max(la)), lb.index(max(lb)))
        self.assertLess(self.rel_diff(la, lb), 5e-2)

    def test_convert_q4_k_m_mix(self):
        """(llama.cpp loading this output: test_llama_compare.test_converted_from_hf_folder)"""
        q4 = self.convert(self.hf, "q4_k_m", "conv-q4km.gguf")
        # the same mix rules as make-test-model's Q4_K_M
        self.assertEqual(self.types(q4), self.types(self.q4km))
        # quantization error of the converted file (from BF16) about that of make-test-model's
        # Q4_K_M (from the float values): logits of the last prompt position against the BF16 folder's
        _, lh = self.generate(self.hf, "hf-q4", n=1)
        _, lc = self.generate(q4, "conv-q4km", n=1)
        _, lm = self.generate(self.q4km, "q4km", n=1)
        rms = lambda x, y: math.sqrt(sum((u - v) ** 2 for u, v in zip(x, y)) / len(x))
        err_conv, err_made, scale = rms(lh, lc), rms(lh, lm), rms(lh, [0.0] * len(lh))
        print(f"Q4_K_M logits rms error vs BF16: converted {err_conv:.3f}, make-test-model {err_made:.3f} "
              f"(logits rms {scale:.2f})")
        self.assertLess(err_conv, 1.3 * err_made)
        self.assertLess(err_conv, 0.25 * scale)

    def test_convert_errors(self):
        self.assert_error([TANDEM, "convert", "-m", self.path("nope"), "-o", self.path("x.gguf")], "nope")
        p = run([TANDEM, "convert", "-m", self.hf, "--quant", "q3_k", "-o", self.path("x.gguf")], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown quant 'q3_k'", p.stderr)

    # merge

    def test_merge_layout_and_manifest(self):
        m = self.merged()
        files = sorted(os.listdir(m))
        self.assertEqual(files, ["config.json", "experts.gguf", "model.safetensors", "tandem-merge.json",
                                 "tokenizer.json", "tokenizer_config.json"])
        with open(os.path.join(m, "tandem-merge.json")) as f:
            man = json.load(f)
        self.assertEqual(man["format"], "tandem-merged-checkpoint")
        t = man["tensors"]
        self.assertEqual(t["blk.0.ffn_gate_exps.weight"]["file"], "experts.gguf")
        self.assertEqual(t["blk.0.ffn_gate_exps.weight"]["type"], "Q4_K")
        self.assertIn("q4km.gguf", t["blk.0.ffn_down_exps.weight"]["from"])
        self.assertEqual(t["blk.1.attn_q.weight"]["file"], "model.safetensors")
        self.assertEqual(t["blk.1.attn_q.weight"]["type"], "BF16")
        self.assertIn("model.layers.1.self_attn.q_proj.weight", t["blk.1.attn_q.weight"]["from"])
        self.assertEqual(len(t), 3 + 2 * 12)
        # the expert blocks are the GGUF's, byte for byte: same types as the reference mix
        self.assertEqual(self.types(m), self.types(self.ref))

    def test_merged_equals_reference_gguf_exactly(self):
        m = self.merged()
        a, la = self.generate(m, "merged")
        b, lb = self.generate(self.ref, "ref")
        self.assertEqual(a["ids"], b["ids"])
        self.assertEqual(len(la), 151936)
        self.assertEqual(la, lb)
        # converting the merged folder keeping its types copies every tensor as is: same logits
        c = self.convert(m, "q4_k_m-exps-bf16", "merged-conv.gguf")
        _, lc = self.generate(c, "merged-conv")
        self.assertEqual(la, lc)

    def test_merge_refuses_models_that_disagree(self):
        other = self.make_model("other-hf", "--format", "hf", "--layers", "3", "--experts", "4", "--hidden", "128",
                                "--seed", "11")
        line = self.assert_error([TANDEM, "merge", "--safetensors", other, "--gguf", self.q4km, "--out",
                                  self.path("bad-merge")], "cannot merge")
        for e in ("layer count: safetensors 3 vs GGUF 2", "expert count: safetensors 4 vs GGUF 8",
                  "hidden size: safetensors 128 vs GGUF 256", "lacks 3 expert tensor(s): blk.2.ffn_gate_exps.weight",
                  "GGUF tensor 'blk.0.ffn_gate_exps.weight' has shape [8, 256, 256], config.json implies [4, 256, 128]",
                  "'model.embed_tokens.weight' has shape [151936, 128]"):
            self.assertIn(e, line)
        self.assertFalse(os.path.exists(self.path("bad-merge")))

    def test_merge_refuses_a_w8a8_parameter_beside_a_float_weight_before_writing(self):
        d = self.path("hf-w8-scale")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.hf, d)
        # one more shard holding a W8A8 scale tensor (F32 [1]), named in the index
        header = json.dumps({"model.layers.0.self_attn.q_proj.input_scale":
                             {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
        header += b" " * ((-len(header)) % 8)
        with open(os.path.join(d, "extra.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 0.5))
        index = os.path.join(d, "model.safetensors.index.json")
        with open(index) as f:
            idx = json.load(f)
        idx["weight_map"]["model.layers.0.self_attn.q_proj.input_scale"] = "extra.safetensors"
        with open(index, "w") as f:
            json.dump(idx, f)
        out = self.path("m-w8")
        self.assert_error([TANDEM, "merge", "--safetensors", d, "--gguf", self.q4km, "--out", out],
                          "model.layers.0.self_attn.q_proj.input_scale (F32)", "not int8")
        self.assertFalse(os.path.exists(out))

    def test_merge_missing_dense_tensor_and_existing_output(self):
        d = self.path("hf-no-qnorm")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.hf, d)
        index = os.path.join(d, "model.safetensors.index.json")
        with open(index) as f:
            idx = json.load(f)
        # hide one tensor from the index: the reader only sees what the index names
        del idx["weight_map"]["model.layers.1.self_attn.q_norm.weight"]
        with open(index, "w") as f:
            json.dump(idx, f)
        p = run([TANDEM, "merge", "--safetensors", d, "--gguf", self.q4km, "--out", self.path("m2")], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("model.layers.1.self_attn.q_norm.weight", p.stderr)
        m = self.merged()
        self.assert_error([TANDEM, "merge", "--safetensors", self.hf, "--gguf", self.q4km, "--out", m],
                          "already holds a model")
