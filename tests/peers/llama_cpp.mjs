// llama.cpp through node-llama-cpp, for tests/cli/quant.sh and bench/quant.sh:
//   node llama_cpp.mjs MODEL.gguf '[[ids...], ...]' N [THREADS]
// prints, per prompt, one JSON line: llama.cpp's greedy continuation (N tokens, the argmax of each
// next-token distribution, end-of-generation tokens included: no sampler, no stop) and the
// log-probability of every token after the prompt.
// node-llama-cpp is found in $LLMKIT_PEERS/node_modules (share/llmkit/install-peers.sh).
import {pathToFileURL} from "node:url";
const peers = process.env.LLMKIT_PEERS || "build/peers";
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(`${peers}/node_modules/node-llama-cpp/dist/index.js`).href);
const [model_path, prompts_json, n_str, threads_str] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: model_path});
const context = await model.createContext({contextSize: 256, threads: Number(threads_str || 1), sequences: 1});
const n = Number(n_str);
const seq = context.getSequence();
for (const prompt of JSON.parse(prompts_json)) {
  await seq.clearHistory();
  let items = prompt.slice(0, -1).concat([[prompt[prompt.length - 1], {generateNext: {probabilities: true}}]]);
  let logp = null;
  const out = [];
  for (let k = 0; k < n; ++k) {
    const res = await seq.controlledEvaluate(items);
    const probs = res[items.length - 1].next.probabilities;
    let best = -1, bestp = -1;
    const lp = {};
    for (const [tok, p] of probs) {
      lp[tok] = Math.log(p);
      if (p > bestp || (p === bestp && tok < best)) { best = tok; bestp = p; }
    }
    if (k === 0) logp = lp;
    out.push(best);
    items = [[best, {generateNext: {probabilities: true}}]];
  }
  console.log(JSON.stringify({tokens: out, logp}));
}
await context.dispose();
await model.dispose();
