// ONNX Runtime as a correctness oracle: run MODEL on .npy inputs and write every output as .npy.
// usage: node ort_run.js MODEL OUTDIR NAME=FILE.npy [NAME=FILE.npy ...]
// Needs onnxruntime-node resolvable (NODE_PATH or a node_modules above this file).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const DT = {
  '<f4': ['float32', Float32Array], '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  '|u1': ['uint8', Uint8Array], '|b1': ['bool', Uint8Array], '<f8': ['float64', Float64Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(file + ': not an npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hoff = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hoff, hoff + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map(s => s.trim())
                    .filter(s => s.length).map(Number);
  const [type, Ctor] = DT[descr] || (() => { throw new Error(file + ': dtype ' + descr); })();
  const data = buf.subarray(hoff + hlen);
  const copy = new Uint8Array(data.length);
  copy.set(data);
  return new ort.Tensor(type, new Ctor(copy.buffer), shape);
}

function writeNpy(file, t) {
  const descr = {float32: '<f4', int64: '<i8', int32: '<i4', uint8: '|u1', bool: '|b1', float64: '<f8'}[t.type];
  if (!descr) throw new Error('cannot write dtype ' + t.type);
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const d = t.data;
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'),
                                        Buffer.from(d.buffer, d.byteOffset, d.byteLength)]));
}

async function main() {
  const [model, outdir, ...ins] = process.argv.slice(2);
  if (!model || !outdir) throw new Error('usage: node ort_run.js MODEL OUTDIR NAME=FILE.npy ...');
  const threads = Number(process.env.ORT_THREADS || 1);
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: process.env.ORT_OPT || 'all',
    intraOpNumThreads: threads, interOpNumThreads: 1,
  });
  const feeds = {};
  for (const a of ins) {
    const i = a.indexOf('=');
    feeds[a.slice(0, i)] = readNpy(a.slice(i + 1));
  }
  const out = await sess.run(feeds);
  fs.mkdirSync(outdir, {recursive: true});
  for (const name of sess.outputNames) {
    writeNpy(path.join(outdir, name.replace(/[^A-Za-z0-9._-]/g, '_') + '.npy'), out[name]);
  }
}
main().catch(e => { console.error('ort_run: ' + e.message); process.exit(1); });
