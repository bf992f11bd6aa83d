"""Chat templates: tandem's Jinja renderer against the reference @huggingface/jinja (transformers.js).

tests/integration/js/chat_reference.mjs writes, per template (Qwen3, Qwen3-2507 Instruct in its two published forms, DeepSeek-R1, DeepSeek-V3),
varied conversations and the reference rendering; the render_chat helper renders the same cases
with tandem and every result must match byte for byte.
"""
import json
import os
import shutil
import unittest

from common import TempDirTestCase, run

HERE = os.path.dirname(os.path.abspath(__file__))
NPM = os.path.join(HERE, "..", "..", "npm", "node_modules")
REFERENCE_JS = os.path.join(HERE, "js", "chat_reference.mjs")
NODE = shutil.which("node") or "/usr/bin/node"
RENDER_CHAT = os.environ.get("RENDER_CHAT_BIN", "build/bin/render_chat")
TEMPLATES = ["qwen3", "deepseek-r1", "deepseek-v3", "qwen3-2507-instruct", "qwen3-4b-instruct-2507", "qwen3-coder"]


class ChatTemplateReferenceTest(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(NPM, "@huggingface", "jinja")):
            raise RuntimeError("npm @huggingface/jinja is missing: run scripts/install-deps.sh")
        super().setUpClass()
        run([NODE, REFERENCE_JS, cls.tmp, NPM])

    def check(self, name):
        path = self.path(f"{name}.json")
        with open(path, encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        self.assertGreaterEqual(len(cases), 50, f"{name}: too few reference cases")
        lines = run([RENDER_CHAT, path]).stdout.splitlines()
        self.assertEqual(len(lines), len(cases))
        for case, line in zip(cases, lines):
            got = json.loads(line)
            with self.subTest(template=name, index=got["index"]):
                self.assertTrue(got["ok"], f"{name} case {got['index']}: {got.get('error')}\n"
                                           f"messages: {json.dumps(case['messages'], ensure_ascii=False)}")
                self.assertEqual(got["text"], case["expected"])

    def test_qwen3(self):
        self.check("qwen3")

    def test_deepseek_r1(self):
        self.check("deepseek-r1")

    def test_deepseek_v3(self):
        self.check("deepseek-v3")

    def test_qwen3_2507_instruct(self):
        self.check("qwen3-2507-instruct")

    def test_qwen3_4b_instruct_2507(self):
        self.check("qwen3-4b-instruct-2507")

    def test_qwen3_coder(self):
        self.check("qwen3-coder")


class ChatTemplateErrorTest(TempDirTestCase):
    def test_unsupported_construct_is_an_error_not_a_crash(self):
        path = self.path("bad.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"template": "line one\n{% include 'x.j2' %}", "cases": [{"messages": []}]}, f)
        got = json.loads(run([RENDER_CHAT, path]).stdout.splitlines()[0])
        self.assertFalse(got["ok"])
        self.assertIn("line 2", got["error"])
        self.assertIn("include", got["error"])


if __name__ == "__main__":
    unittest.main()
