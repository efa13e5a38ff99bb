// The official OpenAI client for Node.js (the `openai` npm package in tests/gateway/node_modules)
// sending the request fields beyond the prompt to a Swarm gateway: n (whole and streamed),
// presence/frequency penalties, logit_bias, a stop list, seed, response_format json_object and
// json_schema, and an invalid value of each kind. Run by test_openai_node_fields.cpp with
// SWARM_API_URL (http://HOST:PORT). Exits non-zero on the first failed check; one line per check.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import OpenAI from "openai";

const sdkVersion = JSON.parse(
  readFileSync(new URL("./node_modules/openai/package.json", import.meta.url), "utf8")).version;
const client = new OpenAI({
  baseURL: `${process.env.SWARM_API_URL}/v1`,
  apiKey: "not-needed",
  maxRetries: 0,
  timeout: 60_000,
});
const model = "stories260K";
const messages = [{ role: "user", content: "Tell me a story." }];
let checks = 0;

async function check(name, body) {
  await body();
  checks += 1;
  console.log(`ok ${checks} - ${name}`);
}

async function rejects400(request, param) {
  await assert.rejects(request, (e) =>
    e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === param &&
    e.type === "invalid_request_error");
}

await check("n=3 gives three indexed choices; the same seed gives the same texts", async () => {
  const request = { model, prompt: "Once upon a time", max_tokens: 12, n: 3, temperature: 1, seed: 42 };
  const a = await client.completions.create(request);
  const b = await client.completions.create(request);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  assert.ok(new Set(a.choices.map((c) => c.text)).size > 1);
  assert.equal(typeof a.system_fingerprint, "string");
  assert.equal(a.system_fingerprint, b.system_fingerprint);
  const other = await client.completions.create({ ...request, seed: 43 });
  assert.notDeepEqual(other.choices.map((c) => c.text), a.choices.map((c) => c.text));
  await rejects400(client.completions.create({ model, prompt: "a", n: 9 }), "n");
});

await check("streamed chat with n=2 interleaves both choices by index", async () => {
  const request = { model, messages, max_tokens: 10, n: 2, temperature: 1, seed: 7 };
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true });
  const content = ["", ""];
  const finish = [null, null];
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      content[choice.index] += choice.delta.content ?? "";
      if (choice.finish_reason) finish[choice.index] = choice.finish_reason;
    }
  }
  assert.deepEqual(content, whole.choices.map((c) => c.message.content));
  assert.deepEqual(finish, whole.choices.map((c) => c.finish_reason));
});

await check("presence and frequency penalties change the greedy text", async () => {
  const request = { model, prompt: "Once upon a time", max_tokens: 40, temperature: 0 };
  const plain = (await client.completions.create(request)).choices[0].text;
  for (const field of ["presence_penalty", "frequency_penalty"]) {
    const penalised = (await client.completions.create({ ...request, [field]: 2 })).choices[0].text;
    assert.notEqual(penalised, plain, field);
    await rejects400(client.completions.create({ ...request, [field]: 2.5 }), field);
  }
});

await check("logit_bias 100 forces a token and -100 bans it", async () => {
  const request = { model, prompt: "Once upon a time", max_tokens: 6, temperature: 0 };
  const plain = (await client.completions.create(request)).choices[0].text;
  // Ban most of the vocabulary (ids 3..299): the greedy text must change.
  const ban = {};
  for (let id = 3; id < 300; id += 1) ban[String(id)] = -100;
  const banned = (await client.completions.create({ ...request, logit_bias: ban })).choices[0].text;
  assert.notEqual(banned, plain);
  const forced = await client.completions.create({
    ...request, temperature: 1, seed: 1, logit_bias: { "400": 100 } });
  const again = await client.completions.create({
    ...request, temperature: 1, seed: 2, logit_bias: { "400": 100 } });
  assert.equal(forced.choices[0].text, again.choices[0].text);  // one token, whatever the seed
  await rejects400(client.completions.create({ ...request, logit_bias: { "5": 101 } }), "logit_bias");
  await rejects400(client.completions.create({ ...request, logit_bias: { "x": 1 } }), "logit_bias");
});

await check("a stop list cuts before the earliest stop", async () => {
  const request = { model, prompt: "", max_tokens: 60, temperature: 0 };
  const plain = (await client.completions.create(request)).choices[0].text;
  const early = plain.slice(20, 25);
  const late = plain.slice(40, 46);
  const cut = Math.min(plain.indexOf(early), plain.indexOf(late));
  const stopped = await client.completions.create({ ...request, stop: [late, "zzzz", early] });
  assert.equal(stopped.choices[0].text, plain.slice(0, cut));
  assert.equal(stopped.choices[0].finish_reason, "stop");
  await rejects400(
    client.completions.create({ ...request, stop: ["a", "b", "c", "d", "e"] }), "stop");
});

await check("response_format json_object gives a JSON object", async () => {
  const reply = await client.chat.completions.create({
    model, messages, max_tokens: 40, temperature: 1, seed: 3,
    response_format: { type: "json_object" } });
  const value = JSON.parse(reply.choices[0].message.content);
  assert.equal(typeof value, "object");
  assert.ok(value !== null && !Array.isArray(value));
  assert.equal(reply.choices[0].finish_reason, "stop");
});

await check("response_format json_schema output parses and validates", async () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 10 },
      color: { enum: ["red", "green", "blue"] },
      scores: { type: "array", items: { type: "integer" }, minItems: 1, maxItems: 4 },
    },
    required: ["name", "color", "scores"],
    additionalProperties: false,
  };
  const reply = await client.chat.completions.create({
    model, messages, max_tokens: 100, temperature: 1, seed: 5, n: 2,
    response_format: { type: "json_schema", json_schema: { name: "story", schema, strict: true } },
  });
  assert.equal(reply.choices.length, 2);
  for (const choice of reply.choices) {
    const v = JSON.parse(choice.message.content);
    assert.deepEqual(Object.keys(v).sort(), ["color", "name", "scores"]);
    assert.equal(typeof v.name, "string");
    assert.ok([...v.name].length <= 10);
    assert.ok(["red", "green", "blue"].includes(v.color));
    assert.ok(Array.isArray(v.scores) && v.scores.length >= 1 && v.scores.length <= 4);
    assert.ok(v.scores.every(Number.isInteger));
    assert.equal(choice.finish_reason, "stop");
  }
  await rejects400(client.chat.completions.create({
    model, messages,
    response_format: { type: "json_schema",
                       json_schema: { name: "s", schema: { type: "string", format: "date" } } },
  }), "response_format.json_schema.schema");
  await rejects400(client.chat.completions.create({
    model, messages, response_format: { type: "yaml" } }), "response_format.type");
});

console.log(`openai ${sdkVersion}: ${checks} passed, 0 failed`);
