"""Hugging Face folders end to end: `make-test-model --format hf` writes the same weights as the
GGUF of the same seed; both load and give the same greedy tokens and last-position logits; broken
folders give one clear error line and exit code 1."""
import json
import math
import os
import shutil

from common import TANDEM, TempDirTestCase, read_f32, run, run_json

PROMPT = "785,6722,315,9625,374,264,3460,1879,13,576"
SHAPE = ["--layers", "2", "--seed", "11"]


class HfFolders(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hf = cls.make_model("hf", "--format", "hf", *SHAPE)  # bf16, 2 shards by default
        cls.gguf_bf16 = cls.make_model("bf16.gguf", "--quant", "bf16", *SHAPE)
        cls.gguf_f16 = cls.make_model("f16.gguf", "--quant", "f16", *SHAPE)

    def assert_error(self, cmd, *expect):
        p = run(cmd, check=False)
        self.assertEqual(p.returncode, 1, f"{cmd}: exit {p.returncode}\n{p.stderr}")
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"expected one error line, got:\n{p.stderr}")
        self.assertTrue(lines[0].startswith("tandem: error: "), lines[0])
        for e in expect:
            self.assertIn(e, lines[0])
        return lines[0]

    def generate(self, model, name, n=16):
        logits = self.path(name + ".logits")
        out = run_json([TANDEM, "run", "-m", model, "--prompt-ids", PROMPT, "-n", n, "--json", "--ignore-eos",
                        "--top", 2, "--logits-out", logits])
        return out, read_f32(logits)

    def copy_hf(self, name):
        dst = self.path(name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.hf, dst)
        return dst

    def test_folder_layout(self):
        files = sorted(os.listdir(self.hf))
        self.assertEqual(files, ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                 "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"])
        with open(os.path.join(self.hf, "config.json")) as f:
            cfg = json.load(f)
        self.assertEqual(cfg["architectures"], ["Qwen3MoeForCausalLM"])
        self.assertEqual((cfg["num_hidden_layers"], cfg["num_experts"], cfg["vocab_size"]), (2, 8, 151936))
        with open(os.path.join(self.hf, "model.safetensors.index.json")) as f:
            wm = json.load(f)["weight_map"]
        self.assertIn("model.layers.1.mlp.experts.7.down_proj.weight", wm)
        self.assertEqual(set(wm.values()), {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})

    def test_inspect_shows_gguf_names(self):
        j = run_json([TANDEM, "inspect", "--json", self.hf])
        g = run_json([TANDEM, "inspect", "--json", self.gguf_bf16])
        self.assertEqual(j["format"], "hf")
        self.assertEqual(j["n_files"], 2)
        self.assertEqual(j["hparams"], g["hparams"])
        self.assertEqual(j["tokenizer"], g["tokenizer"])
        hf_t = {t["name"]: (t["type"], t["shape"]) for t in j["tensors"]}
        gg_t = {t["name"]: (t["type"], t["shape"]) for t in g["tensors"]}
        self.assertEqual(hf_t, gg_t)
        self.assertEqual(j["total_bytes"], g["total_bytes"])
        src = {t["name"]: t.get("source", "") for t in j["tensors"]}
        self.assertIn("model.layers.0.self_attn.q_proj.weight", src["blk.0.attn_q.weight"])
        self.assertIn("Hugging Face safetensors", run([TANDEM, "inspect", "--no-tensors", self.hf]).stdout)

    def test_same_tokens_and_logits_as_gguf_bf16(self):
        """The same BF16 values through the same kernels: identical results."""
        a, la = self.generate(self.hf, "hf")
        b, lb = self.generate(self.gguf_bf16, "bf16")
        self.assertEqual(a["ids"], b["ids"])
        self.assertEqual(len(la), 151936)
        self.assertEqual(la, lb)

    def test_close_to_gguf_f16(self):
        """BF16 against F16 weights (both rounded from the same floats): same greedy tokens up to the
        first near-tie, last prompt position's logits close."""
        a, la = self.generate(self.hf, "hf2")
        b, lb = self.generate(self.gguf_f16, "f16")
        compared = 0
        for i, step in enumerate(b["steps"]):
            if step["top"][0][1] - step["top"][1][1] < 0.5:
                break
            self.assertEqual(a["ids"][i], b["ids"][i], f"step {i}")
            compared += 1
        self.assertGreater(compared, 3)
        self.assertEqual(max(range(len(la)), key=la.__getitem__), max(range(len(lb)), key=lb.__getitem__))
        rms = math.sqrt(sum(x * x for x in lb) / len(lb))
        err = math.sqrt(sum((x - y) ** 2 for x, y in zip(la, lb)) / len(lb))
        self.assertLess(err, 0.05 * rms, f"logits rms {rms}, rms difference {err}")

    def test_dense_qwen3_and_single_file(self):
        hf = self.make_model("dense-hf", "--format", "hf", "--dense", "--split", "1", *SHAPE)
        self.assertTrue(os.path.exists(os.path.join(hf, "model.safetensors")))
        self.assertFalse(os.path.exists(os.path.join(hf, "model.safetensors.index.json")))
        gg = self.make_model("dense.gguf", "--dense", "--quant", "bf16", *SHAPE)
        a, la = self.generate(hf, "dense-hf", n=8)
        b, lb = self.generate(gg, "dense", n=8)
        self.assertEqual(a["ids"], b["ids"])
        self.assertEqual(la, lb)

    def test_tokenizer_and_chat_from_folder(self):
        a = run([TANDEM, "tokenize", "-m", self.hf, "Hello, world <|im_end|>"]).stdout
        b = run([TANDEM, "tokenize", "-m", self.gguf_bf16, "Hello, world <|im_end|>"]).stdout
        self.assertEqual(a, b)
        cmd = ["run", "-p", "Hi", "--chat", "--think", "off", "-n", 4, "--json", "--ignore-eos"]
        self.assertEqual(run_json([TANDEM, *cmd[:1], "-m", self.hf, *cmd[1:]])["prompt_ids"],
                         run_json([TANDEM, *cmd[:1], "-m", self.gguf_bf16, *cmd[1:]])["prompt_ids"])

    def test_missing_shard(self):
        d = self.copy_hf("noshard")
        os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
        self.assert_error([TANDEM, "run", "-m", d, "--prompt-ids", "1"], "model-00002-of-00002.safetensors", "missing")
        self.assert_error([TANDEM, "inspect", d], "missing")

    def test_bad_index(self):
        d = self.copy_hf("badindex")
        index = os.path.join(d, "model.safetensors.index.json")
        with open(index, "w") as f:
            f.write('{"weight_map": {"model.norm.weight": ')
        self.assert_error([TANDEM, "inspect", d], "model.safetensors.index.json", "invalid JSON")
        with open(index, "w") as f:
            json.dump({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}, f)
        self.assert_error([TANDEM, "inspect", d], "model.norm.weight", "not in their shard")

    def test_config_and_tensors_disagree(self):
        d = self.copy_hf("mismatch")
        cfg_path = os.path.join(d, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        for change, words in (
            ({"moe_intermediate_size": 128}, ["experts.0.gate_proj.weight", "config.json implies"]),
            ({"hidden_size": 512}, ["model.embed_tokens.weight", "has shape", "config.json implies"]),
            ({"num_experts": 16}, ["missing expert tensors", "experts.8."]),
            ({"num_hidden_layers": 1}, ["model.layers.1.", "num_hidden_layers = 1"]),
            ({"vocab_size": 1000}, ["vocab_size = 1000"]),
            ({"architectures": ["LlamaForCausalLM"]}, ["'LlamaForCausalLM' is not supported"]),
            ({"rope_scaling": {"rope_type": "longrope", "factor": 4.0, "original_max_position_embeddings": 1024}},
             ["RoPE scaling 'longrope'", "not supported"]),
        ):
            with open(cfg_path, "w") as f:
                json.dump({**cfg, **change}, f)
            self.assert_error([TANDEM, "run", "-m", d, "--prompt-ids", "1"], *words)
        # inspect shows what the forward lacks; YaRN is shown and runs (its angles: test_llama_compare)
        out = run([TANDEM, "inspect", "--no-tensors", d]).stdout
        self.assertIn("rope scaling  longrope, factor 4, original context 1024 (not supported by the forward)", out)
        with open(cfg_path, "w") as f:
            json.dump({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                               "original_max_position_embeddings": 1024}}, f)
        out = run([TANDEM, "inspect", "--no-tensors", d]).stdout
        self.assertIn("rope scaling  yarn, factor 4, original context 1024: contexts up to 4096\n", out)
        j = run_json([TANDEM, "run", "-m", d, "--prompt-ids", "1,2,3", "-n", 2, "--json", "--ignore-eos"])
        self.assertEqual(len(j["ids"]), 2)

    def test_truncated_shard_and_missing_config(self):
        d = self.copy_hf("cut")
        shard = os.path.join(d, "model-00001-of-00002.safetensors")
        with open(shard, "rb") as f:
            data = f.read()
        for n in (4, 100, len(data) // 2):
            with open(shard, "wb") as f:
                f.write(data[:n])
            self.assert_error([TANDEM, "inspect", d], "model-00001-of-00002.safetensors", "truncated")
        os.remove(os.path.join(d, "config.json"))
        self.assert_error([TANDEM, "inspect", d], "config.json", "cannot open")

    def test_make_test_model_hf_options(self):
        self.assert_error([TANDEM, "make-test-model", "-o", self.path("q"), "--format", "hf", "--quant", "q4_k_m"],
                          "--format hf", "bf16")
        self.assert_error([TANDEM, "make-test-model", "-o", self.path("q"), "--format", "safetensors"], "--format")


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
