// llama_ref: independent reference for Tandem's tests, built on llama.cpp's C API
// (prebuilt shared libraries from npm's node-llama-cpp; see CMakeLists.txt).
//
//   llama_ref eval -m MODEL --ids 1,2,3 [-n 32] [--threads 2] [--ctx 512] [--top 5]
//                  [--logits-out FILE] [--flash-attn off|on|auto] [--kv-type f32|f16] [--repack]
//   llama_ref quantize IN.gguf OUT.gguf TYPE [--threads 2]
//     (TYPE: q8_0 q4_k_m q4_0 q5_0 q6_k f16 q4_1 q5_1 q2_k q3_k_s q3_k_m iq4_nl iq4_xs)
//   llama_ref info -m MODEL
//
// Every command accepts --verbose (otherwise llama.cpp's logging is silenced).
// Results are one JSON object on stdout; errors are one line on stderr and exit code 1.

#include <chrono>
#include <llama.h>
#include <ggml-backend.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef TANDEM_LLAMA_BIN_DIR
#define TANDEM_LLAMA_BIN_DIR ""
#endif

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------
// Backend setup
// ---------------------------------------------------------------------------------

// Directory holding the npm build's libggml-cpu-<variant>.so files. They live next to
// libggml.v0.4.0.so, which the dynamic linker already found via our rpath, so ask dladdr
// where that library is. $LLAMA_REF_BACKEND_DIR overrides; the configure-time path is
// the last resort.
std::string backend_dir() {
  if (const char* env = std::getenv("LLAMA_REF_BACKEND_DIR"); env && *env) return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ggml_backend_load_all_from_path), &info) && info.dli_fname) {
    fs::path p = fs::path(info.dli_fname).parent_path();
    if (!p.empty()) return p.string();
  }
  return TANDEM_LLAMA_BIN_DIR;
}

// Path of the CPU variant ggml picked (e.g. .../libggml-cpu-haswell.so), for diagnostics.
std::string loaded_cpu_variant() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libggml-cpu") != std::string::npos) *static_cast<std::string*>(data) = name;
        return 0;
      },
      &found);
  return found;
}

void silent_log(ggml_log_level, const char*, void*) {}

// Must run before any other llama/ggml call. The npm build is GGML_BACKEND_DL: the CPU
// backend is not linked into libggml but dlopen()ed from one of several ISA-specific
// variants; ggml_backend_load_all_from_path() scores them against the host CPU and
// loads the best one. Without this call llama.cpp has no device at all.
void init_backends(bool verbose) {
  if (!verbose) llama_log_set(silent_log, nullptr);  // also covers ggml_log_set
  const std::string dir = backend_dir();
  ggml_backend_load_all_from_path(dir.c_str());
  if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU))
    throw Error("no CPU backend could be loaded from '" + dir + "' (libggml-cpu-*.so)");
  llama_backend_init();
  if (verbose) std::cerr << "llama_ref: CPU backend: " << loaded_cpu_variant() << "\n";
}

// ---------------------------------------------------------------------------------
// Model / context helpers (RAII)
// ---------------------------------------------------------------------------------

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

void require_readable(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open model file '" + path + "': " + std::strerror(errno));
}

ModelPtr load_model(const std::string& path, bool repack = false) {
  require_readable(path);
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;  // CPU only (the npm linux-x64 build has no GPU backend anyway)
  // "Extra buffer types" = weight repacking into CPU-specific layouts (CPU_REPACK for
  // Q4_0/Q4_K/IQ4_NL..., AMX on Sapphire Rapids). Faster, but results then depend on the
  // host CPU; off by default so the reference is the plain ggml CPU path.
  mp.use_extra_bufts = repack;
  ModelPtr model(llama_model_load_from_file(path.c_str(), mp));
  if (!model) throw Error("llama.cpp failed to load model '" + path + "' (rerun with --verbose)");
  return model;
}

// "1, 2,3" -> {1,2,3}
std::vector<llama_token> parse_ids(const std::string& text) {
  std::vector<llama_token> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    char* end = nullptr;
    errno = 0;
    long v = item.empty() ? -1 : std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno || v < 0 || v > INT32_MAX)
      throw Error("--ids: invalid token id '" + item + "' (expected comma-separated non-negative integers)");
    ids.push_back(static_cast<llama_token>(v));
    pos = comma + 1;
  }
  return ids;
}

// ---------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------

struct EvalOptions {
  std::string model;
  std::string ids;
  int n_predict = 32;
  int threads = 2;
  int ctx = 512;
  int top = 5;
  std::string logits_out;
  std::string flash_attn = "off";
  std::string kv_type = "f32";  // exact reference; llama.cpp itself defaults to f16
  bool repack = false;
  bool prompt_top = false;  // also report the distribution after every prompt position
};

// Top-k of one logits row (ties broken by lower id, same as the argmax) + margin.
json summarize(const float* logits, int n_vocab, int top, llama_token& argmax) {
  std::vector<int> idx(n_vocab);
  std::iota(idx.begin(), idx.end(), 0);
  const int k = std::min(std::max(top, 2), n_vocab);  // need >= 2 for the margin
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  argmax = idx[0];
  json top_list = json::array();
  for (int i = 0; i < std::min(top, k); ++i) top_list.push_back({idx[i], logits[idx[i]]});
  const double margin = n_vocab > 1 ? double(logits[idx[0]]) - double(logits[idx[1]]) : 0.0;
  return {{"top", top_list}, {"margin", margin}};
}

// Decode `tokens` at positions [pos0, pos0+n) in ONE llama_decode call, requesting
// logits only for the last token. Returns that token's logits row.
const float* decode(llama_context* ctx, llama_batch& batch, const std::vector<llama_token>& tokens,
                    int pos0, bool all_logits = false) {
  batch.n_tokens = static_cast<int32_t>(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    batch.token[i] = tokens[i];
    batch.pos[i] = pos0 + static_cast<llama_pos>(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = all_logits || (i + 1 == tokens.size());
  }
  if (int rc = llama_decode(ctx, batch); rc != 0)
    throw Error("llama_decode failed with code " + std::to_string(rc) + " at position " + std::to_string(pos0));
  const float* logits = llama_get_logits_ith(ctx, -1);  // -1 = last requested output
  if (!logits) throw Error("llama_get_logits_ith returned no logits");
  return logits;
}

json run_eval(const EvalOptions& o) {
  const std::vector<llama_token> prompt = parse_ids(o.ids);
  if (o.n_predict < 0) throw Error("-n must be >= 0");
  if (o.threads < 1) throw Error("--threads must be >= 1");
  if (o.top < 1) throw Error("--top must be >= 1");
  if (static_cast<long>(prompt.size()) + o.n_predict > o.ctx)
    throw Error("prompt (" + std::to_string(prompt.size()) + ") + -n (" + std::to_string(o.n_predict) +
                ") exceeds --ctx " + std::to_string(o.ctx));

  ModelPtr model = load_model(o.model, o.repack);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model.get()));
  for (llama_token t : prompt)
    if (t >= n_vocab) throw Error("token id " + std::to_string(t) + " out of range (n_vocab " + std::to_string(n_vocab) + ")");

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(o.ctx);
  // Whole prompt = one batch = one ubatch (one graph evaluation), no larger than needed.
  cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(prompt.size());
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = o.threads;
  cp.no_perf = true;
  static const std::map<std::string, llama_flash_attn_type> fa = {
      {"off", LLAMA_FLASH_ATTN_TYPE_DISABLED}, {"on", LLAMA_FLASH_ATTN_TYPE_ENABLED}, {"auto", LLAMA_FLASH_ATTN_TYPE_AUTO}};
  cp.flash_attn_type = fa.at(o.flash_attn);
  cp.type_k = cp.type_v = (o.kv_type == "f32") ? GGML_TYPE_F32 : GGML_TYPE_F16;
  ContextPtr ctx(llama_init_from_model(model.get(), cp));
  if (!ctx) throw Error("llama_init_from_model failed (rerun with --verbose)");

  llama_batch batch = llama_batch_init(static_cast<int32_t>(prompt.size()), 0, 1);
  struct BatchGuard {
    llama_batch& b;
    ~BatchGuard() { llama_batch_free(b); }
  } guard{batch};

  json steps = json::array(), ids = json::array();
  const float* logits = decode(ctx.get(), batch, prompt, 0, o.prompt_top);
  json prompt_steps = json::array();
  if (o.prompt_top) {
    for (size_t i = 0; i < prompt.size(); ++i) {
      llama_token unused = 0;
      prompt_steps.push_back(summarize(llama_get_logits_ith(ctx.get(), static_cast<int32_t>(i)), n_vocab, o.top, unused));
    }
  }
  if (!o.logits_out.empty()) {  // raw little-endian float32 (x86-64 native order)
    std::ofstream f(o.logits_out, std::ios::binary);
    f.write(reinterpret_cast<const char*>(logits), static_cast<std::streamsize>(n_vocab * sizeof(float)));
    if (!f) throw Error("cannot write logits to '" + o.logits_out + "'");
  }
  llama_token next = 0;
  steps.push_back(summarize(logits, n_vocab, o.top, next));  // step 0: after the prompt
  for (int i = 0; i < o.n_predict; ++i) {
    ids.push_back(next);  // greedy: argmax of the current distribution
    if (i + 1 == o.n_predict) break;  // no need to evaluate the last generated token
    logits = decode(ctx.get(), batch, {next}, static_cast<int>(prompt.size()) + i);
    steps.push_back(summarize(logits, n_vocab, o.top, next));
  }
  json out = {{"prompt_ids", prompt}, {"ids", ids}, {"steps", steps}};
  if (o.prompt_top) out["prompt_steps"] = prompt_steps;
  return out;
}

// ---------------------------------------------------------------------------------
// quantize / info
// ---------------------------------------------------------------------------------

void run_quantize(const std::string& in, const std::string& out, const std::string& type, int threads) {
  static const std::map<std::string, llama_ftype> types = {
      {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0}, {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
      {"q5_0", LLAMA_FTYPE_MOSTLY_Q5_0}, {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},     {"f16", LLAMA_FTYPE_MOSTLY_F16},
      {"q4_1", LLAMA_FTYPE_MOSTLY_Q4_1}, {"q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},     {"q2_k", LLAMA_FTYPE_MOSTLY_Q2_K},
      {"q3_k_s", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"q3_k_m", LLAMA_FTYPE_MOSTLY_Q3_K_M},
      {"iq4_nl", LLAMA_FTYPE_MOSTLY_IQ4_NL}, {"iq4_xs", LLAMA_FTYPE_MOSTLY_IQ4_XS}};
  auto it = types.find(type);
  if (it == types.end()) throw Error("unknown quantization type '" + type +
                                      "' (q8_0 q4_k_m q4_0 q5_0 q6_k f16 q4_1 q5_1 q2_k q3_k_s q3_k_m iq4_nl iq4_xs)");
  require_readable(in);
  llama_model_quantize_params qp = llama_model_quantize_default_params();
  qp.ftype = it->second;
  qp.nthread = threads;
  if (llama_model_quantize(in.c_str(), out.c_str(), &qp) != 0)
    throw Error("llama_model_quantize failed for '" + in + "' -> '" + out + "' (rerun with --verbose)");
}

json run_info(const std::string& path) {
  ModelPtr model = load_model(path);
  const llama_model* m = model.get();
  char buf[256] = {0};
  json j = {{"n_vocab", llama_vocab_n_tokens(llama_model_get_vocab(m))},
            {"n_ctx_train", llama_model_n_ctx_train(m)},
            {"n_embd", llama_model_n_embd(m)},
            {"n_layer", llama_model_n_layer(m)},
            {"n_head", llama_model_n_head(m)},
            {"n_head_kv", llama_model_n_head_kv(m)},
            {"n_params", llama_model_n_params(m)}};
  if (llama_model_meta_val_str(m, "general.architecture", buf, sizeof buf) >= 0) j["arch"] = buf;
  if (llama_model_desc(m, buf, sizeof buf) >= 0) j["desc"] = buf;
  j["cpu_backend"] = fs::path(loaded_cpu_variant()).filename().string();
  j["llama_version"] = llama_version();
  return j;
}

}  // namespace

// ---------------------------------------------------------------------------------
// bench: llama.cpp's stock CPU settings (f16 KV, flash attention auto, weight repacking on),
// prompt in ubatches of 512 as llama-bench does; decode timed as single-token decodes.
// ---------------------------------------------------------------------------------

json run_bench(const std::string& path, int n_prompt, int n_gen, int threads, int reps) {
  if (n_prompt < 1 || n_gen < 1 || threads < 1 || reps < 1) throw Error("bench: sizes and threads must be >= 1");
  ModelPtr model = load_model(path, /*repack=*/true);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model.get()));
  double best_pp = 0, best_tg = 0;
  for (int rep = 0; rep < reps; ++rep) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_prompt + n_gen);
    cp.n_batch = static_cast<uint32_t>(n_prompt);
    cp.n_ubatch = std::min<uint32_t>(512, static_cast<uint32_t>(n_prompt));
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    ContextPtr ctx(llama_init_from_model(model.get(), cp));
    if (!ctx) throw Error("llama_init_from_model failed (rerun with --verbose)");
    std::vector<llama_token> prompt(static_cast<size_t>(n_prompt));
    for (int i = 0; i < n_prompt; ++i) prompt[static_cast<size_t>(i)] = (i * 7919 + 13 + rep) % std::min(n_vocab, 150000);
    llama_batch batch = llama_batch_init(n_prompt, 0, 1);
    struct BatchGuard {
      llama_batch& b;
      ~BatchGuard() { llama_batch_free(b); }
    } guard{batch};
    auto t0 = std::chrono::steady_clock::now();
    decode(ctx.get(), batch, prompt, 0);
    const double pp = n_prompt / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    llama_token next = 0;
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n_gen; ++i) {
      const float* logits = decode(ctx.get(), batch, {next}, n_prompt + i);
      next = static_cast<llama_token>(std::max_element(logits, logits + n_vocab) - logits);
    }
    const double tg = n_gen / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_pp = std::max(best_pp, pp);
    best_tg = std::max(best_tg, tg);
  }
  return {{"prefill_tok_s", best_pp}, {"decode_tok_s", best_tg}, {"threads", threads}, {"prompt", n_prompt}, {"gen", n_gen}};
}

int main(int argc, char** argv) {
  CLI::App app{"llama_ref: llama.cpp-based reference for Tandem tests"};
  app.require_subcommand(1);
  bool verbose = false;

  EvalOptions eo;
  auto* eval = app.add_subcommand("eval", "Evaluate prompt ids, then greedily generate -n tokens");
  eval->add_option("-m,--model", eo.model, "GGUF model file")->required();
  eval->add_option("--ids", eo.ids, "Prompt token ids, comma-separated (e.g. 1,2,3)")->required();
  eval->add_option("-n,--n-predict", eo.n_predict, "Tokens to generate (default 32)");
  eval->add_option("--threads", eo.threads, "CPU threads (default 2)");
  eval->add_option("--ctx", eo.ctx, "Context size; prompt + n must fit (default 512)");
  eval->add_option("--top", eo.top, "Top entries reported per step (default 5)");
  eval->add_option("--logits-out", eo.logits_out, "Write step-0 logits as raw float32 LE");
  eval->add_option("--flash-attn", eo.flash_attn, "off|on|auto (default off)")
      ->check(CLI::IsMember({"off", "on", "auto"}));
  eval->add_option("--kv-type", eo.kv_type, "KV cache type f32|f16 (default f32; llama.cpp's own default is f16)")
      ->check(CLI::IsMember({"f16", "f32"}));
  eval->add_flag("--prompt-top", eo.prompt_top, "Also report top entries after every prompt position (prompt_steps)");
  eval->add_flag("--repack", eo.repack, "Allow CPU weight repacking (AMX/CPU_REPACK): faster, host-dependent");
  eval->add_flag("--verbose", verbose, "Show llama.cpp logging on stderr");

  std::string q_in, q_out, q_type;
  int q_threads = 2;
  auto* quant = app.add_subcommand("quantize", "Quantize a GGUF with llama_model_quantize");
  quant->add_option("input", q_in, "Input GGUF")->required();
  quant->add_option("output", q_out, "Output GGUF")->required();
  quant->add_option("type", q_type, "q8_0|q4_k_m|q4_0|q5_0|q6_k|f16")->required();
  quant->add_option("--threads", q_threads, "Threads (default 2)");
  quant->add_flag("--verbose", verbose, "Show llama.cpp logging on stderr");

  std::string i_model;
  auto* info = app.add_subcommand("info", "Load a model and print its hyper-parameters");
  info->add_option("-m,--model", i_model, "GGUF model file")->required();
  info->add_flag("--verbose", verbose, "Show llama.cpp logging on stderr");

  std::string b_model;
  int b_prompt = 512, b_gen = 64, b_threads = 2, b_reps = 1;
  auto* bench = app.add_subcommand("bench", "Prefill and decode tok/s with llama.cpp's stock CPU settings");
  bench->add_option("-m,--model", b_model, "GGUF model file")->required();
  bench->add_option("--prompt", b_prompt, "Prompt tokens (default 512)");
  bench->add_option("--gen", b_gen, "Generated tokens (default 64)");
  bench->add_option("--threads", b_threads, "CPU threads (default 2)");
  bench->add_option("--reps", b_reps, "Repetitions, best reported (default 1)");
  bench->add_flag("--verbose", verbose, "Show llama.cpp logging on stderr");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help on a subcommand etc.
    std::cerr << "llama_ref: error: " << e.what() << " (see llama_ref --help)\n";
    return 1;
  }

  try {
    init_backends(verbose);
    if (*eval) {
      std::cout << run_eval(eo).dump() << "\n";
    } else if (*quant) {
      run_quantize(q_in, q_out, q_type, q_threads);
      std::cout << json{{"output", q_out}, {"type", q_type}}.dump() << "\n";
    } else if (*info) {
      std::cout << run_info(i_model).dump() << "\n";
    } else if (*bench) {
      std::cout << run_bench(b_model, b_prompt, b_gen, b_threads, b_reps).dump() << "\n";
    }
    llama_backend_free();
  } catch (const std::exception& e) {
    std::cerr << "llama_ref: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
