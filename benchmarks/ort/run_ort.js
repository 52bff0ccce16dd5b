// run_ort.js — ONNX Runtime's CPU build as //benchmarks:vs_ort's other side.
//
//   node run_ort.js MODEL.onnx --input IN.f32 --shape 1,C,H,W --threads N
//                   --output OUT.f32 --commands FIFO
//
// Loads the model once (intra-op threads N, inter-op 1, sequential, all
// graph optimizations), runs it once untimed on IN (raw little-endian
// float32, NCHW) and writes that run's first output to OUT. Then prints
// "ready" and takes commands, one per line, from FIFO, so the benchmark can
// alternate rounds between EdgeDI and ORT while both stay warm:
//   run K   runs K times; prints "ms T1 T2 ... TK" (wall milliseconds each)
//   quit    exits 0
// Any failure prints "error MESSAGE" on stdout and exits 1.
'use strict';

const fs = require('fs');
const readline = require('readline');
const ort = require('onnxruntime-node');

function fail(msg) {
  process.stdout.write(`error ${String(msg).replace(/\n/g, ' ')}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const o = { threads: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--input') o.input = v, i++;
    else if (a === '--output') o.output = v, i++;
    else if (a === '--commands') o.commands = v, i++;
    else if (a === '--shape') o.shape = v.split(',').map(Number), i++;
    else if (a === '--threads') o.threads = Number(v), i++;
    else if (!a.startsWith('--') && !o.model) o.model = a;
    else fail(`unknown argument ${a}`);
  }
  if (!o.model || !o.input || !o.shape || !o.commands) fail('usage: run_ort.js MODEL --input IN --shape 1,C,H,W --commands FIFO [--threads N] [--output OUT]');
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(o.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const raw = fs.readFileSync(o.input);
  const n = o.shape.reduce((a, b) => a * b, 1);
  if (raw.length !== n * 4) fail(`${o.input}: ${raw.length} bytes, want ${n * 4}`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = raw.readFloatLE(4 * i);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, o.shape) };
  const first = await session.run(feeds);
  if (o.output) {
    const out = first[session.outputNames[0]].data;
    fs.writeFileSync(o.output, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
  }
  process.stdout.write('ready\n');

  const rl = readline.createInterface({ input: fs.createReadStream(o.commands) });
  for await (const line of rl) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'quit') process.exit(0);
    if (cmd !== 'run') fail(`unknown command '${line}'`);
    const ms = [];
    for (let k = 0; k < Number(arg); k++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    process.stdout.write(`ms ${ms.map((t) => t.toFixed(3)).join(' ')}\n`);
  }
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : e));
