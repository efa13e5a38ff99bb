// The official OpenAI client for Node.js (the `openai` npm package, installed into
// tests/gateway/node_modules by scripts/setup.sh) against a Swarm gateway. Run by
// test_openai_node.cpp with SWARM_API_URL (http://HOST:PORT) and SWARM_REFERENCE (the greedy
// reference text of stories260K: 200 tokens after BOS, then a newline). Exits non-zero on the
// first failed check; prints one line per check.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import OpenAI from "openai";

const sdkVersion = JSON.parse(
  readFileSync(new URL("./node_modules/openai/package.json", import.meta.url), "utf8")).version;
const reference = readFileSync(process.env.SWARM_REFERENCE, "utf8").replace(/\n$/, "");
const client = new OpenAI({
  baseURL: `${process.env.SWARM_API_URL}/v1`,
  apiKey: "not-needed",  // the gateway does not check keys; the client insists on one
  maxRetries: 0,
  timeout: 60_000,
});
const model = "stories260K";
let checks = 0;

async function check(name, body) {
  await body();
  checks += 1;
  console.log(`ok ${checks} - ${name}`);
}

await check("models.list names the model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
});

await check("completion (greedy, 200 tokens) is the reference text", async () => {
  const completion = await client.completions.create({
    model, prompt: "", max_tokens: 200, temperature: 0,
  });
  assert.equal(completion.object, "text_completion");
  assert.equal(completion.choices[0].text, reference);
  assert.equal(completion.choices[0].finish_reason, "length");
  assert.equal(completion.usage.prompt_tokens, 1);
  assert.equal(completion.usage.completion_tokens, 200);
});

await check("streamed completion is the reference text", async () => {
  const stream = await client.completions.create({
    model, prompt: "", max_tokens: 200, temperature: 0, stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  assert.equal(text, reference);
});

await check("completion with echo and logprobs, max_tokens 0, scores the prompt", async () => {
  const prompt = "Once upon a time there was a girl";
  const scored = await client.completions.create({
    model, prompt, max_tokens: 0, echo: true, logprobs: 2,
  });
  const lp = scored.choices[0].logprobs;
  assert.equal(scored.choices[0].text, prompt);
  assert.equal(lp.tokens.length, scored.usage.prompt_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.text_offset.length, lp.tokens.length);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < lp.tokens.length; i += 1) {
    assert.ok(lp.token_logprobs[i] < 0, `token ${i}: ${lp.token_logprobs[i]}`);
    assert.ok(Object.keys(lp.top_logprobs[i]).length <= 2);
  }
  // Generating after the same prompt: the echoed part's numbers are the same.
  const generated = await client.completions.create({
    model, prompt, max_tokens: 4, temperature: 0, echo: true, logprobs: 2,
  });
  const glp = generated.choices[0].logprobs;
  assert.equal(glp.tokens.length, lp.tokens.length + 4);
  for (let i = 1; i < lp.tokens.length; i += 1) {
    assert.ok(Math.abs(glp.token_logprobs[i] - lp.token_logprobs[i]) < 1e-4);
  }
});

await check("chat completion with logprobs and top_logprobs", async () => {
  const chat = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0,
    logprobs: true, top_logprobs: 3,
  });
  const content = chat.choices[0].logprobs.content;
  assert.ok(content.length >= 1);
  for (const e of content) {
    assert.equal(typeof e.token, "string");
    assert.ok(e.logprob <= 0);
    assert.ok(Array.isArray(e.bytes));
    assert.equal(e.top_logprobs.length, 3);
    assert.equal(e.top_logprobs[0].logprob, e.logprob);  // greedy: the likeliest token
  }
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }],
      logprobs: true, top_logprobs: 21 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "top_logprobs");
});

// stories260K has no chat template, so the gateway renders the plain one: BOS, then
// "User: {content}\nAssistant:", and the reply ends at the next "\nUser:". The chat's answer is
// that completion, without the space it starts with.
const messages = [{ role: "user", content: "Tell me a story." }];
let whole;
await check("chat completion follows the plain template", async () => {
  whole = await client.chat.completions.create({
    model, messages, max_tokens: 40, temperature: 0,
  });
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.choices[0].message.role, "assistant");
  assert.ok(whole.choices[0].message.content.length > 0);
  const plain = await client.completions.create({
    model, prompt: "User: Tell me a story.\nAssistant:", max_tokens: 40, temperature: 0,
    stop: ["\nUser:"],
  });
  assert.equal(whole.choices[0].message.content, plain.choices[0].text.replace(/^ +/, ""));
  assert.equal(whole.usage.prompt_tokens, plain.usage.prompt_tokens);
});

await check("streamed chat deltas concatenate to the whole answer", async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 40, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let content = "";
  let role = null;
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.role) role = choice.delta.role;
      content += choice.delta.content ?? "";
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.equal(role, "assistant");
  assert.equal(content, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

await check("a bad request is an APIError with OpenAI's fields", async () => {
  await assert.rejects(
    client.completions.create({ model, prompt: "a", max_tokens: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "max_tokens" &&
      e.type === "invalid_request_error");
  await assert.rejects(
    client.chat.completions.create({ model: "gpt-4", messages: [] }),
    (e) => e instanceof OpenAI.APIError && e.status === 400);
});

console.log(`openai ${sdkVersion}: ${checks} passed, 0 failed`);
