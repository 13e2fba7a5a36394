// Drives Neurometric with the official `openai` npm package: a non-stream and a streamed completion.
// Usage: NEUROMETRIC_BASE_URL=http://127.0.0.1:8000/v1 NEUROMETRIC_API_KEY=nm-... node chat.mjs
// Prints one JSON line with what it saw; the pytest wrapper asserts on it.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.NEUROMETRIC_BASE_URL,
  apiKey: process.env.NEUROMETRIC_API_KEY,
  maxRetries: 0,
});
const messages = [{ role: "user", content: "Say hello to the tests" }];

const { data: completion, response } = await client.chat.completions
  .create({ model: "gpt-4o", messages })
  .withResponse();

const stream = await client.chat.completions.create({
  model: "gpt-4o",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}

let authError = null;
try {
  await new OpenAI({ baseURL: process.env.NEUROMETRIC_BASE_URL, apiKey: "nm-wrong", maxRetries: 0 })
    .chat.completions.create({ model: "gpt-4o", messages });
} catch (err) {
  authError = { name: err.constructor.name, status: err.status, code: err.code };
}

console.log(JSON.stringify({
  content: completion.choices[0].message.content,
  requestId: response.headers.get("x-request-id"),
  streamed,
  chunks,
  usage,
  authError,
}));
