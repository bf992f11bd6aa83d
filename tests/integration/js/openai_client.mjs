// The official OpenAI Node client (npm `openai`) against a running `tandem serve`:
//   node openai_client.mjs BASE_URL API_KEY MODEL [NPM_NODE_MODULES_DIR]
// Chat and completions, streaming and not, usage, stop sequences, seeded sampling, and the
// client's typed errors for 400 / 401 / 404. Exits 1 at the first failed check.
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const [baseURL, apiKey, model] = process.argv.slice(2, 5);
if (!model) {
  console.error("usage: node openai_client.mjs BASE_URL API_KEY MODEL [NPM_NODE_MODULES_DIR]");
  process.exit(2);
}
const modules = process.argv[5] ?? path.resolve(here, "../../../npm/node_modules");
const { default: OpenAI } = await import(pathToFileURL(path.join(modules, "openai/index.mjs")).href);

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
let n = 0;
const ok = (what) => console.log(`ok ${++n} ${what}`);

// models
const models = await client.models.list();
assert.deepEqual(models.data.map((m) => m.id), [model]);
ok("models.list");

// chat, not streaming
const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name a prime number." },
];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(["stop", "length"].includes(chat.choices[0].finish_reason));
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
assert.ok(chat.usage.completion_tokens >= 1 && chat.usage.completion_tokens <= 16);
ok("chat.completions.create");

// chat, streaming with usage: the same text as the non-streaming answer (greedy)
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", reasoning = "", finish = null, usage = null;
for await (const chunk of stream) {
  for (const c of chunk.choices) {
    text += c.delta?.content ?? "";
    reasoning += c.delta?.reasoning_content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  if (chunk.usage) usage = chunk.usage;
}
const full = (chat.choices[0].message.reasoning_content ?? "") + chat.choices[0].message.content;
assert.equal(reasoning + text, full);
assert.equal(text, chat.choices[0].message.content);
assert.equal(finish, chat.choices[0].finish_reason);
assert.deepEqual(usage.completion_tokens, chat.usage.completion_tokens);
ok("chat streaming equals non-streaming, usage chunk");

// completions, both ways
const prompt = "The quick brown fox";
const comp = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0 });
assert.equal(comp.object, "text_completion");
const ctext = comp.choices[0].text;
let streamed = "";
for await (const chunk of await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stream: true }))
  streamed += chunk.choices[0]?.text ?? "";
assert.equal(streamed, ctext);
ok("completions, streaming and not");

// stop sequences: cut before the first match, not emitted
const mid = Math.floor(ctext.length / 2);
const stop = ctext.slice(mid, mid + 3);
if (stop.length === 3) {
  const cut = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].text, ctext.slice(0, ctext.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, "stop");
  let s2 = "";
  for await (const chunk of await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stop, stream: true }))
    s2 += chunk.choices[0]?.text ?? "";
  assert.equal(s2, cut.choices[0].text);
  ok(`stop sequence ${JSON.stringify(stop)}`);
}

// seeded sampling is reproducible
const sampled = async (seed) =>
  (await client.completions.create({ model, prompt, max_tokens: 12, temperature: 1, seed })).choices[0].text;
assert.equal(await sampled(7), await sampled(7));
ok("seeded sampling");

// n choices of a list of prompts, and the prompt's logprobs by echo (as lm-eval sends them)
const multi = await client.completions.create({ model, prompt: [prompt, "Hello"], n: 2, max_tokens: 4, temperature: 0 });
assert.deepEqual(multi.choices.map((c) => c.index), [0, 1, 2, 3]);
assert.ok(multi.choices.every((c) => typeof c.text === "string" && c.finish_reason === "length"));
assert.equal(multi.usage.completion_tokens, 4 * 4);
const echoed = await client.completions.create({ model, prompt, echo: true, logprobs: 1, max_tokens: 0, temperature: 0 });
assert.equal(echoed.choices[0].text, prompt);
assert.equal(echoed.choices[0].logprobs.tokens.join(""), prompt);
assert.equal(echoed.choices[0].logprobs.token_logprobs[0], null);
assert.ok(echoed.choices[0].logprobs.token_logprobs.slice(1).every((x) => x <= 0));
ok("n, prompt lists, echo with logprobs");

// structured output: response_format json_schema, and a forced tool call, as the SDK sends them
const schema = {
  type: "object", additionalProperties: false, required: ["answer", "sure"],
  properties: { answer: { type: "integer" }, sure: { type: "boolean" } },
};
const structured = await client.chat.completions.create({
  model, messages, max_tokens: 600, temperature: 0,
  response_format: { type: "json_schema", json_schema: { name: "prime", schema, strict: true } },
  chat_template_kwargs: { enable_thinking: false },
});
assert.equal(structured.choices[0].finish_reason, "stop");
const parsed = JSON.parse(structured.choices[0].message.content);
assert.deepEqual(Object.keys(parsed).sort(), ["answer", "sure"]);
assert.ok(Number.isInteger(parsed.answer) && typeof parsed.sure === "boolean");
const forced = await client.chat.completions.create({
  model, messages, max_tokens: 600, temperature: 0, parallel_tool_calls: false,
  tools: [{ type: "function", function: { name: "check_prime", parameters: schema } }],
  tool_choice: { type: "function", function: { name: "check_prime" } },
  chat_template_kwargs: { enable_thinking: false },
});
assert.equal(forced.choices[0].finish_reason, "tool_calls");
const call = forced.choices[0].message.tool_calls[0];
assert.equal(call.function.name, "check_prime");
assert.deepEqual(Object.keys(JSON.parse(call.function.arguments)).sort(), ["answer", "sure"]);
ok("response_format json_schema, tool_choice naming a function");

// the Responses API (what Codex CLI and the Agents SDK send): text, streamed the same,
// a function call and its output sent back, structured text, stateless errors
const rbase = { model, input: "Name a prime number.", instructions: "You are terse.", max_output_tokens: 12,
                temperature: 0, reasoning: { effort: "none" } };
const resp = await client.responses.create(rbase);
assert.equal(resp.object, "response");
assert.ok(resp.id.startsWith("resp_"));
assert.ok(["completed", "incomplete"].includes(resp.status));
assert.equal(resp.output.at(-1).type, "message");
assert.ok(resp.output_text.length > 0);
assert.ok(resp.usage.output_tokens > 0 && resp.usage.output_tokens <= 12);
const rstream = client.responses.stream(rbase);
let rtext = "";
rstream.on("response.output_text.delta", (e) => { rtext += e.delta; });
const rfinal = await rstream.finalResponse();
assert.equal(rtext, resp.output_text);
assert.equal(rfinal.output_text, resp.output_text);
assert.equal(rfinal.status, resp.status);
const fnTool = { type: "function", name: "check_prime", parameters: schema, strict: true };
const rcall = await client.responses.create({
  ...rbase, max_output_tokens: 600, tools: [fnTool, { type: "web_search" }],
  tool_choice: { type: "function", name: "check_prime" },
});
const fc = rcall.output.find((o) => o.type === "function_call");
assert.equal(fc.name, "check_prime");
assert.deepEqual(Object.keys(JSON.parse(fc.arguments)).sort(), ["answer", "sure"]);
const rcallStreamed = await client.responses.stream({
  ...rbase, max_output_tokens: 600, tools: [fnTool], tool_choice: { type: "function", name: "check_prime" },
}).finalResponse();
assert.equal(rcallStreamed.output.find((o) => o.type === "function_call").arguments, fc.arguments);
const rafter = await client.responses.create({
  ...rbase, tools: [fnTool],
  input: [{ role: "user", content: "Is 7 prime?" }, fc, { type: "function_call_output", call_id: fc.call_id, output: "yes" }],
});
assert.equal(rafter.output.at(-1).type, "message");
const rjson = await client.responses.create({
  ...rbase, max_output_tokens: 600, text: { format: { type: "json_schema", name: "prime", schema, strict: true } },
});
assert.equal(rjson.status, "completed");
assert.deepEqual(Object.keys(JSON.parse(rjson.output_text)).sort(), ["answer", "sure"]);
ok("responses: create, stream, function call and output, json_schema");

// errors come back as the client's typed errors
const expectError = async (fn, Cls, status) => {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, status);
    assert.ok(e.error?.message || e.message);
    return;
  }
  assert.fail(`expected ${Cls.name}`);
};
await expectError(() => client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 2 }),
  OpenAI.NotFoundError, 404);
await expectError(() => client.chat.completions.create({ model, messages, max_tokens: -5 }), OpenAI.BadRequestError, 400);
await expectError(() => client.chat.completions.create({ model, messages: [], max_tokens: 2 }), OpenAI.BadRequestError, 400);
await expectError(() => client.responses.create({ ...rbase, previous_response_id: resp.id }), OpenAI.BadRequestError, 400);
const wrongKey = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
await expectError(() => wrongKey.models.list(), OpenAI.AuthenticationError, 401);
ok("errors: 404 model, 400 bad request, 401 key");
console.log(`all ${n} checks passed`);
