"""Tandem's CPU forward against llama.cpp (npm node-llama-cpp prebuilt, via build/bin/llama_ref)
on the same synthetic files.

- llama.cpp loads every file make-test-model writes; Tandem loads files llama.cpp quantized.
- F16: greedy tokens equal llama.cpp's for 32 steps, except after a step where llama.cpp's own
  top-2 logit margin is under 0.05 (either token is then a valid argmax and the runs may part).
- Q8_0 / Q4_K_M: activations are quantized to 8 bits before every matmul, which turns float
  rounding differences of ~1e-6 into logit differences of ~0.5. llama.cpp's own two attention
  paths (flash attention on/off) differ by that much and part ways in free-running generation,
  so the 32-step rule cannot hold for any two implementations. Instead Tandem must agree with
  llama.cpp at least as well as llama.cpp's flash-attention path does: teacher-forced argmax
  agreement (same input tokens at every position) and the size of the top-logit differences.
- Last-prompt-position logits agree within a relative tolerance.
"""
import os
import unittest

from common import LLAMA_REF, TANDEM, THREADS, TempDirTestCase, read_f32, run, run_json

N_STEPS = 32
MARGIN = 0.05
PROMPTS = [
    [785, 6722, 315, 9625, 374],  # "The capital of France is"
    [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198],  # a chat turn
    [(i * 7919 + 13) % 151000 for i in range(48)],  # longer, arbitrary ids
]
# a top-2 margin that rounding differences between two quantized paths never bridge (their top
# logits differ by up to ~0.8 on these models)
CLEAR_MARGIN = 1.5
# max |logit diff| / max |logit| over the whole vocabulary at the last prompt position
REL_TOL = {"f16": 2e-3, "q8_0": 2.5e-2, "q4_k_m": 2.5e-2, "low_bit": 2.5e-2}


def ids_arg(ids):
    return ",".join(map(str, ids))


class LlamaCompare(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.exists(LLAMA_REF):
            raise RuntimeError(f"{LLAMA_REF} missing: run scripts/install-deps.sh and rebuild")

    def llama(self, model, ids, *extra):
        return run_json([LLAMA_REF, "eval", "-m", model, "--ids", ids_arg(ids), "--top", 2, "--kv-type", "f16",
                         "--threads", THREADS, "--ctx", 1024, *extra])

    def tandem(self, model, ids, *extra):
        return run_json([TANDEM, "run", "-m", model, "--prompt-ids", ids_arg(ids), "--ignore-eos", "--json",
                         "--threads", THREADS, "--top", 2, *extra])

    @staticmethod
    def free_running_agreement(ref, other):
        """Steps on which `other` generated ref's token, up to ref's first near-tie."""
        n = 0
        for i in range(N_STEPS):
            if ref["steps"][i]["margin"] < MARGIN or other["ids"][i] != ref["ids"][i]:
                break
            n += 1
        return n

    @staticmethod
    def teacher_forced(ref_steps, other_steps, min_margin=MARGIN):
        """(agreeing positions, compared positions, max top-1 logit diff) over positions where
        llama.cpp's margin is at least min_margin."""
        agree = compared = 0
        worst = 0.0
        for r, o in zip(ref_steps, other_steps):
            if r["margin"] < min_margin:
                continue
            compared += 1
            agree += r["top"][0][0] == o["top"][0][0]
            worst = max(worst, abs(r["top"][0][1] - o["top"][0][1]))
        return agree, compared, worst

    def last_logits_rel_diff(self, model, prompt):
        ref_path, our_path = self.path("ref.f32"), self.path("ours.f32")
        self.llama(model, prompt, "-n", 0, "--logits-out", ref_path)
        self.tandem(model, prompt, "-n", 1, "--logits-out", our_path)
        a, b = read_f32(ref_path), read_f32(our_path)
        self.assertEqual(len(a), len(b))
        return max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a)

    def compare(self, model, quant):
        name = os.path.basename(model)
        tf_ours, tf_alt = [0, 0, 0.0], [0, 0, 0.0]
        clear = [0, 0]  # low_bit: (agreeing, compared) where llama.cpp's margin is CLEAR_MARGIN or more
        for k, prompt in enumerate(PROMPTS):
            ref = self.llama(model, prompt, "-n", N_STEPS)
            ours = self.tandem(model, prompt, "-n", N_STEPS)
            self.assertEqual(ours["prompt_ids"], prompt)
            n_ours = self.free_running_agreement(ref, ours)
            n_cut = next((i for i in range(N_STEPS) if ref["steps"][i]["margin"] < MARGIN), N_STEPS)
            rel = self.last_logits_rel_diff(model, prompt)
            print(f"{name} prompt {k}: {n_ours} greedy steps equal to llama.cpp (its first near-tie at step "
                  f"{n_cut}); last logits rel diff {rel:.2e}")
            self.assertLess(rel, REL_TOL[quant], f"{name} prompt {k}: last-position logits differ")
            if quant == "f16":
                self.assertEqual(n_ours, n_cut, f"{name} prompt {k}: greedy tokens part before llama.cpp's near-tie")
                continue
            # quantized: teacher-forced over prompt + llama.cpp's continuation
            seq = prompt + ref["ids"][:-1]
            ref_tf = self.llama(model, seq, "-n", 1, "--prompt-top")["prompt_steps"]
            alt_tf = self.llama(model, seq, "-n", 1, "--prompt-top", "--flash-attn", "on")["prompt_steps"]
            our_tf = self.tandem(model, seq, "-n", 1, "--prompt-top")["prompt_steps"]
            for acc, got in ((tf_ours, self.teacher_forced(ref_tf, our_tf)), (tf_alt, self.teacher_forced(ref_tf, alt_tf))):
                acc[0] += got[0]
                acc[1] += got[1]
                acc[2] = max(acc[2], got[2])
            got = self.teacher_forced(ref_tf, our_tf, CLEAR_MARGIN)
            clear[0] += got[0]
            clear[1] += got[1]
        if quant != "f16":
            print(f"{name}: teacher-forced argmax agreement with llama.cpp: Tandem {tf_ours[0]}/{tf_ours[1]} "
                  f"(max top-logit diff {tf_ours[2]:.3f}); llama.cpp flash-attention path {tf_alt[0]}/{tf_alt[1]} "
                  f"(max diff {tf_alt[2]:.3f})")
            if quant == "low_bit":
                # 2-4 bit weights amplify rounding differences: the counts over near-tied
                # positions move by several between any two paths (llama.cpp's own included), so
                # the test is that every position clear of that noise agrees
                print(f"{name}: positions with llama.cpp's margin >= {CLEAR_MARGIN}: {clear[0]}/{clear[1]} agree")
                self.assertGreater(clear[1], 0.5 * tf_ours[1])
                self.assertEqual(clear[0], clear[1], f"{name}: a clear llama.cpp choice differs")
            else:
                self.assertGreaterEqual(tf_ours[0], tf_alt[0] - 2, f"{name}: Tandem agrees with llama.cpp less than "
                                        "llama.cpp's own flash-attention path does")
            self.assertGreaterEqual(tf_ours[0], 0.9 * tf_ours[1])
            self.assertLessEqual(tf_ours[2], 1.5 * tf_alt[2] + 0.1, f"{name}: top logits differ more than llama.cpp's own paths")

    def test_f16(self):
        self.compare(self.make_model("tiny-f16.gguf", "--quant", "f16"), "f16")

    def test_dense_qwen3_f16(self):
        self.compare(self.make_model("dense-f16.gguf", "--dense", "--dense-ff", "512"), "f16")

    def test_q8_0(self):
        self.compare(self.make_model("tiny-q8_0.gguf", "--quant", "q8_0"), "q8_0")

    def test_q4_k_m(self):
        self.compare(self.make_model("tiny-q4_k_m.gguf", "--quant", "q4_k_m"), "q4_k_m")

    def test_rope_scaling_yarn_and_linear_f16(self):
        """RoPE context extension (Qwen3's YaRN rope_scaling, and linear): Tandem's angles are
        llama.cpp's. An original context of 256 puts most dimensions on YaRN's ramp and a
        300-token prompt goes past it; the scaled model must differ clearly from the unscaled one
        (the comparison would otherwise prove nothing)."""
        plain = self.make_model("tiny-f16.gguf", "--quant", "f16")
        long_prompt = [(i * 7919 + 13) % 151000 for i in range(300)]
        for kind in ("yarn", "linear"):
            model = self.make_model(f"tiny-f16-{kind}.gguf", "--quant", "f16", "--rope-scaling", kind,
                                    "--rope-factor", "4", "--rope-orig-ctx", "256")
            self.compare(model, "f16")
            rel = self.last_logits_rel_diff(model, long_prompt)
            print(f"{kind}: 300-token prompt, last logits rel diff to llama.cpp {rel:.2e}")
            self.assertLess(rel, REL_TOL["f16"])
            ours, unscaled = self.path(f"{kind}.f32"), self.path("plain.f32")
            self.tandem(model, long_prompt, "-n", 1, "--logits-out", ours)
            self.tandem(plain, long_prompt, "-n", 1, "--logits-out", unscaled)
            a, b = read_f32(ours), read_f32(unscaled)
            self.assertGreater(max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a), 20 * REL_TOL["f16"],
                               f"{kind}: scaling changed nothing")

    def test_converted_from_hf_folder(self):
        """`tandem convert` of a Hugging Face BF16 folder to Q4_K_M: llama.cpp loads it and agrees."""
        hf = self.make_model("tiny-hf", "--format", "hf")
        out = self.path("converted-q4_k_m.gguf")
        run([TANDEM, "convert", "-m", hf, "--quant", "q4_k_m", "-o", out, "--threads", THREADS])
        self.compare(out, "q4_k_m")

    def test_files_quantized_by_llama_cpp(self):
        f16 = self.make_model("tiny-f16.gguf", "--quant", "f16")
        for quant in ("q8_0", "q4_k_m"):
            out = self.path(f"llama-{quant}.gguf")
            run([LLAMA_REF, "quantize", f16, out, quant])
            info = run_json([TANDEM, "inspect", "--json", out])
            self.assertEqual(info["architecture"], "qwen3moe")
            types = {t["type"] for t in info["tensors"]}
            self.assertIn("Q8_0" if quant == "q8_0" else "Q4_K", types)
            self.compare(out, quant)

    def test_read_only_types_quantized_by_llama_cpp(self):
        """Files in the types Tandem reads but does not write (Q2_K, Q3_K_M, IQ4_XS, Q4_1, Q5_1,
        IQ4_NL mixes), made by llama.cpp's quantizer: Tandem agrees with llama.cpp as well as
        llama.cpp's own flash-attention path does."""
        f16 = self.make_model("tiny-f16.gguf", "--quant", "f16")
        for quant, main_type in (("q2_k", "Q2_K"), ("q3_k_m", "Q3_K"), ("iq4_xs", "IQ4_XS"), ("q4_1", "Q4_1"),
                                 ("q5_1", "Q5_1"), ("iq4_nl", "IQ4_NL")):
            out = self.path(f"llama-{quant}.gguf")
            run([LLAMA_REF, "quantize", f16, out, quant])
            types = {t["type"] for t in run_json([TANDEM, "inspect", "--json", out])["tensors"]}
            self.assertIn(main_type, types)
            self.compare(out, "low_bit")

    def test_llama_cpp_loads_every_quant(self):
        cases = [(q, []) for q in ("f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k_m")]
        cases.append(("q4_k_m", ["--hidden", "160"]))  # widths not divisible by 256: fallback types
        for quant, shape in cases:
            model = self.make_model(f"tiny1-{quant}{''.join(shape)}.gguf", "--quant", quant, "--layers", "1", *shape)
            info = run_json([LLAMA_REF, "info", "-m", model])
            self.assertEqual(info["arch"], "qwen3moe")
            self.assertEqual(info["n_vocab"], 151936)
            ref = self.llama(model, PROMPTS[0], "-n", 4)
            ours = self.tandem(model, PROMPTS[0], "-n", 4)
            self.assertEqual(len(ref["ids"]), 4)
            self.assertEqual(ours["ids"][0], ref["ids"][0], f"{quant}: first token differs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
