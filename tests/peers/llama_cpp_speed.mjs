// llama.cpp's speed through node-llama-cpp, for bench/quant.sh:
//   node llama_cpp_speed.mjs MODEL.gguf PROMPT_TOKENS NEW_TOKENS THREADS [REPEATS]
// prompt processing (a prompt of random ids evaluated at once) and greedy decoding, one token a
// call, best of REPEATS (default 3); prints {"pp_tokens_per_s", "decode_tokens_per_s"}.
import {pathToFileURL} from "node:url";
const peers = process.env.LLMKIT_PEERS || "build/peers";
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(`${peers}/node_modules/node-llama-cpp/dist/index.js`).href);
const [model_path, p_str, n_str, threads_str, repeats_str] = process.argv.slice(2);
const P = Number(p_str), N = Number(n_str), R = Number(repeats_str || 3);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: model_path});
const context = await model.createContext({contextSize: P + N + 8, threads: Number(threads_str), sequences: 1, batchSize: Math.max(512, P)});
const seq = context.getSequence();
let state = 3;
const rand = () => (state = (state * 1103515245 + 12345) % 2147483648);
const vocab = model.tokens.bos === undefined ? 256 : 256;
const prompt = [2];
while (prompt.length < P) prompt.push(4 + (rand() % (vocab - 4)));
let pp = Infinity, dec = Infinity;
for (let r = 0; r < R; ++r) {
  await seq.clearHistory();
  let t0 = performance.now();
  const res = await seq.controlledEvaluate(prompt.slice(0, -1).concat([[prompt[P - 1], {generateNext: {token: true, options: {temperature: 0}}}]]));
  pp = Math.min(pp, (performance.now() - t0) / 1000);
  let next = res[P - 1].next.token;
  t0 = performance.now();
  for (let k = 0; k < N; ++k) {
    const out = await seq.controlledEvaluate([[next, {generateNext: {token: true, options: {temperature: 0}}}]]);
    next = out[0].next.token;
  }
  dec = Math.min(dec, (performance.now() - t0) / 1000 / N);
}
console.log(JSON.stringify({pp_tokens_per_s: P / pp, decode_tokens_per_s: 1 / dec}));
await context.dispose();
await model.dispose();
