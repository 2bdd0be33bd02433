// ONNX Runtime side of bench/compare_ort.sh: the same measurement as `seifer bench --json`.
// usage: node ort_bench.js MODEL THREADS ITERS WARMUP      (prints one JSON line)
//        node ort_bench.js --baseline                      (RSS of node + onnxruntime, no model)
'use strict';
const ort = require('onnxruntime-node');

function fill(n, seed) {
  const a = new Float32Array(n);
  let x = BigInt(seed) * 2654435761n + 1n;
  const M = (1n << 64n) - 1n;
  for (let i = 0; i < n; i++) {
    x ^= (x << 13n) & M; x ^= x >> 7n; x ^= (x << 17n) & M;
    a[i] = Number(x >> 11n) / 9007199254740992 * 2 - 1;
  }
  return a;
}

async function main() {
  if (process.argv[2] === '--baseline') {
    console.log(JSON.stringify({peak_rss_bytes: process.resourceUsage().maxRSS * 1024}));
    return;
  }
  const [model, threads, iters, warmup] = process.argv.slice(2);
  const t0 = process.hrtime.bigint();
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    intraOpNumThreads: Number(threads), interOpNumThreads: 1, executionMode: 'sequential',
  });
  const feeds = {};
  let k = 1;
  for (const name of sess.inputNames) {
    const meta = sess.inputMetadata ? sess.inputMetadata.find(m => m.name === name) : null;
    let dims = meta && meta.shape ? meta.shape.map(d => (typeof d === 'number' && d > 0 ? d : 1)) : null;
    if (!dims) throw new Error('cannot read the shape of input ' + name);
    const n = dims.reduce((a, b) => a * b, 1);
    feeds[name] = new ort.Tensor('float32', fill(n, k++), dims);
  }
  await sess.run(feeds);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  for (let i = 1; i < Number(warmup); i++) await sess.run(feeds);
  const lat = [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < Number(iters); i++) {
    const a = process.hrtime.bigint();
    await sess.run(feeds);
    lat.push(Number(process.hrtime.bigint() - a) / 1e6);
  }
  const total = Number(process.hrtime.bigint() - start) / 1e9;
  lat.sort((a, b) => a - b);
  const pct = p => { const i = p * (lat.length - 1), lo = Math.floor(i), hi = Math.ceil(i);
                     return lat[lo] + (lat[hi] - lat[lo]) * (i - lo); };
  console.log(JSON.stringify({
    model, threads: Number(threads), iters: Number(iters), throughput_per_s: Number(iters) / total,
    p50_ms: pct(0.5), p99_ms: pct(0.99), load_ms: loadMs,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  }));
}
main().catch(e => { console.error('ort_bench: ' + e.message); process.exit(1); });
