"""Tandem's CPU forward against llama.cpp (npm node-llama-cpp prebuilt, via build/bin/llama_ref)
on the same synthetic files: llama.cpp loads every file make-test-model writes, Tandem loads files
llama.cpp quantized, greedy tokens agree for 32 steps (until llama.cpp's own top-2 margin drops
under 0.05, where either token is a valid argmax), and last-prompt-position logits agree."""
import os
import unittest

from common import LLAMA_REF, TANDEM, THREADS, TempDirTestCase, read_f32, run, run_json

N_STEPS = 32
MARGIN = 0.05
PROMPTS = [
    [785, 6722, 315, 9625, 374],  # "The capital of France is"
    [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198],  # chat turn
    [(i * 7919 + 13) % 151000 for i in range(48)],  # longer, arbitrary ids
]
# max |logit diff| / max |logit| at the last prompt position
REL_TOL = {"f16": 2e-3, "q8_0": 5e-3, "q4_k_m": 5e-3}


class LlamaCompare(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.exists(LLAMA_REF):
            raise RuntimeError(f"{LLAMA_REF} missing: run scripts/install-deps.sh and rebuild")

    def compare(self, model, quant):
        for k, prompt in enumerate(PROMPTS):
            ids = ",".join(map(str, prompt))
            ref_logits, our_logits = self.path("ref.f32"), self.path("ours.f32")
            ref = run_json([LLAMA_REF, "eval", "-m", model, "--ids", ids, "-n", N_STEPS, "--top", 2,
                            "--kv-type", "f16", "--threads", THREADS, "--logits-out", ref_logits])
            ours = run_json([TANDEM, "run", "-m", model, "--prompt-ids", ids, "-n", N_STEPS, "--ignore-eos",
                             "--json", "--threads", THREADS, "--logits-out", our_logits])
            self.assertEqual(ours["prompt_ids"], prompt)
            compared = 0
            for i in range(N_STEPS):
                if ref["steps"][i]["margin"] < MARGIN:
                    break  # llama.cpp itself is at a near-tie: later tokens may legitimately differ
                self.assertEqual(ours["ids"][i], ref["ids"][i],
                                 f"{quant} prompt {k}: step {i} differs (llama margin {ref['steps'][i]['margin']:.3f})")
                compared += 1
            a, b = read_f32(ref_logits), read_f32(our_logits)
            self.assertEqual(len(a), len(b))
            scale = max(abs(x) for x in a)
            diff = max(abs(x - y) for x, y in zip(a, b))
            print(f"{os.path.basename(model)} prompt {k}: {compared}/{N_STEPS} greedy tokens equal; "
                  f"last logits max|diff| {diff:.4g} (rel {diff / scale:.2e})")
            self.assertLess(diff / scale, REL_TOL[quant], f"{quant} prompt {k}: logits differ")

    def test_f16(self):
        self.compare(self.make_model("tiny-f16.gguf", "--quant", "f16"), "f16")

    def test_q8_0(self):
        self.compare(self.make_model("tiny-q8_0.gguf", "--quant", "q8_0"), "q8_0")

    def test_q4_k_m(self):
        self.compare(self.make_model("tiny-q4_k_m.gguf", "--quant", "q4_k_m"), "q4_k_m")

    def test_files_quantized_by_llama_cpp(self):
        f16 = self.make_model("tiny-f16.gguf", "--quant", "f16")
        for quant in ("q8_0", "q4_k_m"):
            out = self.path(f"llama-{quant}.gguf")
            run([LLAMA_REF, "quantize", f16, out, quant])
            info = run_json([TANDEM, "inspect", "--json", out])
            self.assertEqual(info["architecture"], "qwen3moe")
            self.compare(out, quant)

    def test_llama_cpp_loads_every_quant(self):
        for quant in ("f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k_m"):
            model = self.make_model(f"tiny-{quant}.gguf", "--quant", quant, "--layers", "1")
            info = run_json([LLAMA_REF, "info", "-m", model])
            self.assertEqual(info["arch"], "qwen3moe")
            self.assertEqual(info["n_vocab"], 151936)
            out = run_json([LLAMA_REF, "eval", "-m", model, "--ids", "1,2,3", "-n", 2])
            self.assertEqual(len(out["ids"]), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
