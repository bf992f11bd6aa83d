// The official Anthropic TypeScript SDK (npm `@anthropic-ai/sdk`) against a running `tandem serve`'s
// Messages API, as Claude Code and other Anthropic clients use it:
//   node anthropic_client.mjs BASE_URL API_KEY [NPM_NODE_MODULES_DIR]
// Messages streaming and not, system prompts, stop sequences, thinking on and off, a forced tool
// call and a tool result sent back, token counting, and the client's typed errors. Exits 1 at the
// first failed check.
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const [baseURL, apiKey] = process.argv.slice(2, 4);
if (!apiKey) {
  console.error("usage: node anthropic_client.mjs BASE_URL API_KEY [NPM_NODE_MODULES_DIR]");
  process.exit(2);
}
const modules = process.argv[4] ?? path.resolve(here, "../../../npm/node_modules");
const { default: Anthropic } = await import(pathToFileURL(path.join(modules, "@anthropic-ai/sdk/index.mjs")).href);

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const model = "claude-sonnet-4-5";  // Anthropic clients name their own models: the server answers any
let n = 0;
const ok = (what) => console.log(`ok ${++n} ${what}`);
const textOf = (msg) => msg.content.filter((b) => b.type === "text").map((b) => b.text).join("");

// not streaming: one text block, usage, the model name asked for
const base = {
  model, max_tokens: 16, temperature: 0, system: "You are terse.",
  messages: [{ role: "user", content: "Name a prime number." }], thinking: { type: "disabled" },
};
const msg = await client.messages.create(base);
assert.equal(msg.type, "message");
assert.equal(msg.role, "assistant");
assert.equal(msg.model, model);
assert.ok(msg.id.startsWith("msg_"));
assert.ok(["end_turn", "max_tokens"].includes(msg.stop_reason));
assert.equal(msg.content[0].type, "text");
assert.ok(msg.usage.input_tokens > 0);
assert.ok(msg.usage.output_tokens > 0 && msg.usage.output_tokens <= 16);
ok("messages.create");

// streaming: the SDK's own event accumulation gives the same message
const stream = client.messages.stream(base);
let streamed = "";
stream.on("text", (t) => { streamed += t; });
const final = await stream.finalMessage();
assert.equal(streamed, textOf(msg));
assert.equal(textOf(final), textOf(msg));
assert.equal(final.stop_reason, msg.stop_reason);
assert.equal(final.usage.output_tokens, msg.usage.output_tokens);
ok("messages.stream equals messages.create");

// stop_sequences: cut before the first match, reported as stop_sequence
const long = await client.messages.create({ ...base, max_tokens: 24 });
const full = textOf(long);
const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
if (stop.trim().length === 3) {
  const cut = await client.messages.create({ ...base, max_tokens: 24, stop_sequences: [stop] });
  assert.equal(textOf(cut), full.slice(0, full.indexOf(stop)));
  assert.equal(cut.stop_reason, "stop_sequence");
  assert.equal(cut.stop_sequence, stop);
  ok(`stop_sequences ${JSON.stringify(stop)}`);
}

// thinking on: reasoning comes back as a thinking block before the text, streamed the same
const thinking = { ...base, max_tokens: 40, thinking: { type: "enabled", budget_tokens: 1024 } };
const t1 = await client.messages.create(thinking);
const t2 = await client.messages.stream(thinking).finalMessage();
assert.deepEqual(t2.content.map((b) => b.type), t1.content.map((b) => b.type));
for (const [a, b] of t1.content.map((blk, i) => [blk, t2.content[i]]))
  assert.equal(a.type === "thinking" ? a.thinking : a.text ?? "", b.type === "thinking" ? b.thinking : b.text ?? "");
ok(`thinking (blocks: ${t1.content.map((b) => b.type).join(", ")})`);

// a forced tool call: a tool_use block whose input follows the schema, then its result sent back
const tools = [{
  name: "check_prime", description: "Checks a number",
  input_schema: { type: "object", properties: { n: { type: "integer" }, why: { type: "string", maxLength: 20 } },
                  required: ["n", "why"], additionalProperties: false },
}];
const forced = { ...base, max_tokens: 200, tools, tool_choice: { type: "tool", name: "check_prime" } };
const call = await client.messages.create(forced);
assert.equal(call.stop_reason, "tool_use");
const use = call.content.find((b) => b.type === "tool_use");
assert.equal(use.name, "check_prime");
assert.ok(use.id.startsWith("toolu_"));
assert.deepEqual(Object.keys(use.input).sort(), ["n", "why"]);
assert.ok(Number.isInteger(use.input.n));
const streamedCall = await client.messages.stream(forced).finalMessage();
assert.deepEqual(streamedCall.content.find((b) => b.type === "tool_use").input, use.input);
const after = await client.messages.create({
  ...base, tools,
  messages: [
    ...base.messages,
    { role: "assistant", content: call.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "yes, it is prime" }] },
  ],
});
assert.equal(after.content[0].type, "text");
ok("tool_use forced, streamed the same, tool_result answered");

// count_tokens: the rendered conversation's length, which input_tokens also reports
const counted = await client.messages.countTokens({ model, system: base.system, messages: base.messages,
                                                    thinking: base.thinking });
assert.equal(counted.input_tokens, msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0));
ok("messages.countTokens");

// errors come back as the SDK's typed errors
const expectError = async (fn, Cls, status) => {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.error?.type, "error");
    return;
  }
  assert.fail(`expected ${Cls.name}`);
};
await expectError(() => client.messages.create({ ...base, messages: [] }), Anthropic.BadRequestError, 400);
await expectError(() => client.messages.create({ ...base, max_tokens: -1 }), Anthropic.BadRequestError, 400);
await expectError(() => client.messages.create({
  ...base, messages: [{ role: "user", content: [{ type: "image", source: { type: "url", url: "http://x/y.png" } }] }],
}), Anthropic.BadRequestError, 400);
const wrongKey = new Anthropic({ baseURL, apiKey: "wrong", maxRetries: 0 });
await expectError(() => wrongKey.messages.create(base), Anthropic.AuthenticationError, 401);
ok("errors: 400 bad request, 401 key");
console.log(`all ${n} checks passed`);
