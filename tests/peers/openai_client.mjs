// llm-serve through OpenAI's official Node client (the npm package openai), for tests/cli/serve.sh:
//   node openai_client.mjs api BASE_URL KEY MODEL   completions and chat, streamed and not, seeds, n,
//                                                   stop strings, usage, logprobs, errors
//   node openai_client.mjs busy BASE_URL KEY        a second request while the only slot streams: 429
// Prints one line per check ("ok ..." or "FAIL ..."); exits 1 if any failed.
// The client is found in $LLMKIT_PEERS/node_modules (share/llmkit/install-peers.sh).
import {pathToFileURL} from "node:url";
const peers = process.env.LLMKIT_PEERS || "build/peers";
const {default: OpenAI} = await import(pathToFileURL(`${peers}/node_modules/openai/index.mjs`).href);

const [mode, baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0, timeout: 60000});
let failures = 0;
function check(what, cond, detail = "") {
  console.log(`${cond ? "ok" : "FAIL"} ${what}${cond || !detail ? "" : ": " + detail}`);
  if (!cond) failures++;
}
async function status(what, promise, want, param, code) {
  try {
    const r = await promise;
    if (r && typeof r[Symbol.asyncIterator] === "function") for await (const _ of r);
    check(what, false, "no error");
  } catch (e) {
    check(what, e.status === want && (!param || e.param === param) && (!code || e.code === code),
          `status ${e.status}, param ${e.param}, code ${e.code}: ${e.message}`);
  }
}
// A stream's text, finish reasons, usage chunk and first chat delta.
async function collect(stream) {
  const out = {text: {}, finish: {}, finishes: 0, usage: null, roleFirst: true, chunks: 0, firstDelta: {}};
  for await (const chunk of stream) {
    out.chunks++;
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      const i = c.index;
      const t = c.delta !== undefined ? c.delta.content ?? "" : c.text;
      if (c.delta !== undefined && !(i in out.firstDelta)) out.firstDelta[i] = c.delta;
      out.text[i] = (out.text[i] ?? "") + t;
      if (c.finish_reason) { out.finish[i] = c.finish_reason; out.finishes++; }
    }
  }
  return out;
}

if (mode === "busy") {
  // The only slot and no queue: a long stream holds it, the next request is refused with 429.
  const long = await client.completions.create({prompt: "the cat", max_tokens: 400, temperature: 0, stream: true, ignore_eos: true});
  const it = long[Symbol.asyncIterator]();
  await it.next();
  await status("429 while the server is full", client.completions.create({prompt: "the dog", max_tokens: 4}), 429);
  for (let r = await it.next(); !r.done; r = await it.next());
  const after = await client.completions.create({prompt: "the dog", max_tokens: 4, temperature: 0});
  check("a request after the stream ends is served", after.choices[0].text.length > 0 && after.usage.completion_tokens <= 4);
  process.exit(failures ? 1 : 0);
}

const models = await client.models.list();
check("models.list names the served model", models.data.length === 1 && models.data[0].id === model, JSON.stringify(models.data));

// Completions: whole and streamed, greedy, the same text and usage.
const base = {model, prompt: "the cat sat on", max_tokens: 24, temperature: 0, ignore_eos: true};
const whole = await client.completions.create(base);
const c0 = whole.choices[0];
check("completion: text, finish length, usage", c0.text.length > 0 && c0.finish_reason === "length" &&
      whole.usage.completion_tokens === 24 && whole.usage.total_tokens === whole.usage.prompt_tokens + 24, JSON.stringify(whole));
check("completion: ids and object", whole.id.startsWith("cmpl-") && whole.object === "text_completion" && whole.model === model);
const tok = await (await fetch(`${baseURL}/tokenize`, {method: "POST", headers: {Authorization: `Bearer ${apiKey}`},
                                                      body: JSON.stringify({prompt: base.prompt})})).json();
check("usage.prompt_tokens is /tokenize's count", whole.usage.prompt_tokens === tok.count, `${whole.usage.prompt_tokens} vs ${tok.count}`);
const streamed = await collect(await client.completions.create({...base, stream: true, stream_options: {include_usage: true}}));
check("completion stream: the same text as whole", streamed.text[0] === c0.text, `${JSON.stringify(streamed.text[0])} vs ${JSON.stringify(c0.text)}`);
check("completion stream: one finish chunk, the usage chunk", streamed.finishes === 1 && streamed.finish[0] === "length" &&
      streamed.usage && streamed.usage.completion_tokens === 24 && streamed.usage.prompt_tokens === whole.usage.prompt_tokens);
const plain = await collect(await client.completions.create({...base, stream: true}));
check("completion stream without include_usage: no usage", plain.usage === null && plain.text[0] === c0.text);

// Stop strings: a piece of the greedy text that spans tokens ends it there, streamed or not.
const stop = c0.text.slice(5, 9);
const cut = c0.text.slice(0, c0.text.indexOf(stop));
const stopped = await client.completions.create({...base, stop: [stop, "never appears"]});
check(`stop ${JSON.stringify(stop)}: cut before it, finish stop`, stopped.choices[0].text === cut && stopped.choices[0].finish_reason === "stop",
      JSON.stringify(stopped.choices[0]));
const stoppedStream = await collect(await client.completions.create({...base, stop, stream: true}));
check("stop, streamed: the same text", stoppedStream.text[0] === cut && stoppedStream.finish[0] === "stop", JSON.stringify(stoppedStream.text[0]));

// Seeds: sampled, reproducible for a seed; n choices.
const sampled = {model, prompt: "the", max_tokens: 16, temperature: 1.0, seed: 7, ignore_eos: true};
const s1 = await client.completions.create(sampled), s2 = await client.completions.create(sampled);
const s3 = await client.completions.create({...sampled, seed: 8});
check("seed: the same text twice", s1.choices[0].text === s2.choices[0].text);
check("another seed: another text", s1.choices[0].text !== s3.choices[0].text);
const sStream = await collect(await client.completions.create({...sampled, stream: true}));
check("seed, streamed: the same text as whole", sStream.text[0] === s1.choices[0].text);
const three = await client.completions.create({...sampled, n: 3});
check("n 3: three choices, indexed, usage summed", three.choices.length === 3 && three.choices.map(c => c.index).join() === "0,1,2" &&
      three.usage.completion_tokens === 48 && three.usage.prompt_tokens === s1.usage.prompt_tokens);
check("n 3: the first is the n 1 sample of the seed", three.choices[0].text === s1.choices[0].text);
const twoPrompts = await client.completions.create({model, prompt: ["the cat", "a dog"], max_tokens: 3, temperature: 0, ignore_eos: true});
check("two prompts: two choices", twoPrompts.choices.length === 2 && twoPrompts.usage.completion_tokens === 6);

// Logprobs: the sampled token's, and the likeliest ones', greedy token first.
const lp = await client.completions.create({...base, max_tokens: 4, logprobs: 3});
const L = lp.choices[0].logprobs;
check("completion logprobs: tokens, top 3, greedy = best", L.tokens.length === 4 && L.top_logprobs.every(t => Object.keys(t).length === 3) &&
      L.token_logprobs.every((v, i) => v <= 0 && Math.abs(v - Math.max(...Object.values(L.top_logprobs[i]))) < 1e-5) &&
      L.tokens.join("") === lp.choices[0].text, JSON.stringify(L));

// Chat: whole and streamed.
const chat = {model, messages: [{role: "system", content: "you are a cat"}, {role: "user", content: "the dog"}],
              max_tokens: 12, temperature: 0};
const cw = await client.chat.completions.create(chat);
check("chat: assistant message, usage", cw.object === "chat.completion" && cw.choices[0].message.role === "assistant" &&
      typeof cw.choices[0].message.content === "string" && cw.usage.total_tokens === cw.usage.prompt_tokens + cw.usage.completion_tokens &&
      ["stop", "length"].includes(cw.choices[0].finish_reason), JSON.stringify(cw));
const cs = await collect(await client.chat.completions.create({...chat, stream: true, stream_options: {include_usage: true}}));
check("chat stream: role first, the same text, one finish", cs.firstDelta[0].role === "assistant" && cs.text[0] === cw.choices[0].message.content &&
      cs.finishes === 1 && cs.finish[0] === cw.choices[0].finish_reason && cs.usage.completion_tokens === cw.usage.completion_tokens,
      JSON.stringify(cs));
const clp = await client.chat.completions.create({...chat, max_tokens: 3, logprobs: true, top_logprobs: 2});
const content = clp.choices[0].logprobs.content;
check("chat logprobs: token, logprob, bytes, top 2", content.length >= 1 && content.every(c => c.top_logprobs.length === 2 &&
      Array.isArray(c.bytes) && c.logprob <= 0));
// A second request with the same system prompt finds its blocks cached.
const longSystem = "the cat sat on the mat and the dog ran to the big red house ".repeat(4);
const first = await client.chat.completions.create({...chat, messages: [{role: "system", content: longSystem}, {role: "user", content: "a"}], max_tokens: 2});
const again = await client.chat.completions.create({...chat, messages: [{role: "system", content: longSystem}, {role: "user", content: "b"}], max_tokens: 2});
check("a shared system prompt: cached_tokens", first.usage.prompt_tokens_details.cached_tokens === 0 &&
      again.usage.prompt_tokens_details.cached_tokens >= 16, JSON.stringify([first.usage, again.usage]));

// Errors, as the client raises them.
const wrong = new OpenAI({baseURL: `${baseURL}/v1`, apiKey: "wrong-key", maxRetries: 0});
await status("a wrong key: 401", wrong.completions.create(base), 401);
await status("an unknown model: 404", client.completions.create({...base, model: "no-such-model"}), 404, "model", "model_not_found");
await status("a wrong type: 400 naming the field", client.completions.create({...base, temperature: "hot"}), 400, "temperature");
await status("past the context: 400 context_length_exceeded", client.completions.create({...base, max_tokens: 100000}), 400,
             "max_tokens", "context_length_exceeded");
await status("past the context, streamed: 400 too", client.completions.create({...base, max_tokens: 100000, stream: true}), 400,
             "max_tokens", "context_length_exceeded");
await status("chat without messages: 400", client.chat.completions.create({model, messages: []}), 400, "messages");
process.exit(failures ? 1 : 0);
