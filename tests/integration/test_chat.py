"""`tandem chat` end to end on a tiny synthetic model: a scripted conversation through a pipe,
and an interactive one in a real pseudo-terminal (tmux) with Ctrl-C during an answer; and
`tandem run -p --chat`."""
import json
import os
import shutil
import subprocess
import time
import unittest

from common import TANDEM, THREADS, TempDirTestCase, run, run_json


def chat(model, script, *args, verbose=False):
    cmd = [TANDEM] + (["-v"] if verbose else []) + ["chat", "-m", model, "--threads", THREADS, *args]
    p = subprocess.run([str(c) for c in cmd], input=script, capture_output=True, text=True, timeout=600)
    return p


class ChatPipe(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf", "--layers", "1")

    def test_scripted_conversation(self):
        saved = self.path("conv.json")
        script = "\n".join([
            "Hello there",
            "Second \\",           # a trailing backslash continues the message
            "line",
            '"""',                 # a block
            "block one",
            "",
            "block two",
            '"""',
            "/save " + saved,
            "/reset",
            "/system Be brief.",
            "After the reset",
            "/think off",
            "No thinking now",
            "/save " + saved + ".2",
        ]) + "\n"
        p = chat(self.model, script, "-n", "6", verbose=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        stats = [l for l in p.stderr.splitlines() if l.startswith("[") and "tok/s" in l]
        self.assertEqual(len(stats), 5, p.stderr)
        self.assertNotIn("> ", p.stdout[:2])  # no prompt decoration through a pipe
        self.assertNotIn("\x1b[", p.stdout)

        with open(saved) as f:
            conv = json.load(f)
        self.assertEqual([m["role"] for m in conv], ["user", "assistant"] * 3)
        self.assertEqual([m["content"] for m in conv[0::2]], ["Hello there", "Second \nline", "block one\n\nblock two"])
        for m in conv[1::2]:
            self.assertIsInstance(m["content"], str)

        with open(saved + ".2") as f:
            conv2 = json.load(f)
        self.assertEqual([m["role"] for m in conv2], ["system", "user", "assistant", "user", "assistant"])
        self.assertEqual(conv2[0]["content"], "Be brief.")
        self.assertEqual(conv2[1]["content"], "After the reset")
        self.assertEqual(conv2[3]["content"], "No thinking now")

        # the prompts (debug log): the second turn reuses the cache, /think off closes the think block
        prompts = [x.split("\n[")[0] for x in p.stderr.split("chat prompt (")[1:]]
        self.assertEqual(len(prompts), 5)
        self.assertTrue(prompts[-1].rstrip("\n").endswith("<|im_start|>assistant\n<think>\n\n</think>"), prompts[-1])
        self.assertFalse(prompts[-2].rstrip("\n").endswith("</think>"), prompts[-2])
        cached = [int(l.split(" cached")[0].split()[-1]) for l in stats]
        self.assertEqual(cached[0], 0)
        self.assertGreater(cached[1], 0)
        self.assertGreater(cached[2], cached[1])

    def test_first_answer_matches_run_chat(self):
        saved = self.path("first.json")
        p = chat(self.model, f"Tell me a story\n/save {saved}\n", "-n", "10", "--system", "S", "--think", "off")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(saved) as f:
            conv = json.load(f)
        out = run_json([TANDEM, "run", "-m", self.model, "-p", "Tell me a story", "--chat", "--system", "S",
                        "--think", "off", "-n", "10", "--json", "--threads", THREADS])
        self.assertEqual(out["prompt_ids"][:3], [151644, 8948, 198])  # <|im_start|>system\n
        if out["finish_reason"] == "length" and len(out["ids"]) == 10:
            self.assertEqual(conv[2]["content"], out["text"].lstrip("\n"))

    def test_chat_template_option(self):
        # a template of our own, as a file or inline: the prompt is what it renders
        tmpl = "{% for m in messages %}[{{ m.role }}: {{ m.content }}]{% endfor %}{% if add_generation_prompt %}=>{% endif %}"
        path = self.path("t.jinja")
        with open(path, "w") as f:
            f.write(tmpl)
        want = run_json([TANDEM, "tokenize", "-m", self.model, "[system: S][user: Hi]=>"])
        for arg in (path, tmpl):
            out = run_json([TANDEM, "run", "-m", self.model, "-p", "Hi", "--chat", "--system", "S", "--chat-template",
                            arg, "-n", "2", "--json", "--threads", THREADS])
            self.assertEqual(out["prompt_ids"], want)
        # the same through chat: the saved conversation answers the rendered prompt
        p = chat(self.model, "Hi\n", "-n", "2", "--chat-template", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        for bad, what in [("{% for %}", "--chat-template:"), (self.path("none.jinja"), "cannot read")]:
            p = run([TANDEM, "run", "-m", self.model, "-p", "Hi", "--chat", "--chat-template", bad, "-n", "2"],
                    check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(what, p.stderr)

    def test_help(self):
        self.assertIn("--max-tokens", run([TANDEM, "chat", "--help"]).stdout)
        self.assertIn("--chat", run([TANDEM, "run", "--help"]).stdout)

    def test_unknown_command_and_eof(self):
        p = chat(self.model, "/nonsense\n/think maybe\n", "-n", "2")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown command", p.stderr)
        p = chat(self.model, "", "-n", "2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "")

    def test_too_long_message_is_an_error_line(self):
        p = chat(self.model, "word " * 400 + "\n", "-n", "8", "--ctx", "128")
        self.assertEqual(p.returncode, 1)
        self.assertIn("tandem: error: chat: the message", p.stderr)

    def test_run_chat_needs_prompt(self):
        p = run([TANDEM, "run", "-m", self.model, "--prompt-ids", "1,2", "--chat"], check=False)
        self.assertEqual(p.returncode, 2)


class ChatTerminal(TempDirTestCase):
    """A real terminal: tmux runs tandem chat in a pane; keys go in with send-keys, the screen
    comes back with capture-pane."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed: run scripts/install-deps.sh")
        super().setUpClass()
        cls.model = cls.make_model("tiny.gguf", "--layers", "1")
        cls.sock = f"tandem-test-{os.getpid()}"

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=check)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "chat").stdout

    def wait_for(self, pred, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def keys(self, text, enter=True):
        self.tmux("send-keys", "-t", "chat", "-l", text)
        if enter:
            self.tmux("send-keys", "-t", "chat", "Enter")

    def tearDown(self):
        self.tmux("kill-server", check=False)

    def test_interactive_with_ctrl_c(self):
        saved = self.path("tty.json")
        done = self.path("exit-code")
        # -n large: the answer runs until Ctrl-C (or the context is full)
        cmd = (f"{TANDEM} chat -m {self.model} --threads {THREADS} -n 100000 --ctx 4096; "
               f"echo $? > {done}; sleep 60")
        self.tmux("new-session", "-d", "-s", "chat", "-x", "160", "-y", "50", cmd)
        self.wait_for(lambda s: "/help for commands" in s and s.rstrip().endswith(">"), "the prompt")

        self.keys("first line \\")
        self.keys("second line")
        # the answer streams: wait until some of it is on screen, then stop it
        s0 = self.wait_for(lambda s: s.count("\n") >= 0 and len(s.split("second line", 1)[-1].strip()) > 40,
                           "a streamed answer")
        self.tmux("send-keys", "-t", "chat", "C-c")
        s = self.wait_for(lambda s: "[interrupted" in s, "the interrupted answer")
        self.assertIn("tok/s", s)
        self.assertIn("second line", s0)
        self.wait_for(lambda s: s.rstrip().endswith(">"), "the prompt after Ctrl-C")

        # still alive: another command and a short answer
        self.keys("/save " + saved)
        # the typed command itself contains "tty.json": wait for the confirmation line
        self.wait_for(lambda s: "(saved 2 messages to" in s, "/save")
        with open(saved) as f:
            conv = json.load(f)
        self.assertEqual([m["role"] for m in conv], ["user", "assistant"])
        self.assertEqual(conv[0]["content"], "first line \nsecond line")
        self.assertTrue(conv[1]["content"])

        # Ctrl-C twice at the prompt leaves
        self.tmux("send-keys", "-t", "chat", "C-c")
        self.wait_for(lambda s: "Ctrl-C again" in s, "the Ctrl-C hint")
        self.assertFalse(os.path.exists(done))
        self.tmux("send-keys", "-t", "chat", "C-c")
        end = time.time() + 30
        while not os.path.exists(done) and time.time() < end:
            time.sleep(0.2)
        time.sleep(0.2)
        with open(done) as f:
            self.assertEqual(f.read().strip(), "0")


if __name__ == "__main__":
    unittest.main()
