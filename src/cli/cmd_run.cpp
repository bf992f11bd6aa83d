#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "kernels/cpu/cpu_features.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/chat_session.h"
#include "runtime/sampler.h"
#include "serve/json_schema.h"
#include "serve/token_constraint.h"
#include "tokenizer/tokenizer.h"

namespace tandem::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

nlohmann::json top_logits(const float* logits, int64_t n_vocab, int k) {
    std::vector<int32_t> idx((size_t)n_vocab);
    for (int64_t i = 0; i < n_vocab; ++i) idx[(size_t)i] = (int32_t)i;
    k = (int)std::min<int64_t>(k, n_vocab);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    nlohmann::json top = nlohmann::json::array();
    for (int i = 0; i < k; ++i) top.push_back({idx[(size_t)i], logits[idx[(size_t)i]]});
    return top;
}

// -j: inline JSON (starts with { or is true) or the name of a file holding it
Result<std::shared_ptr<const JsonSchema>> load_json_schema(const std::string& arg) {
    std::string text = arg;
    const size_t first = arg.find_first_not_of(" \t\n\r");
    if (first == std::string::npos || (arg[first] != '{' && arg.compare(first, 4, "true") != 0)) {
        std::ifstream in(arg, std::ios::binary);
        if (!in) return make_error("--json-schema: '{}' is neither a JSON object nor a readable file", arg);
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return make_error("--json-schema: not valid JSON");
    auto s = JsonSchema::compile(j);
    if (!s) return make_error("--json-schema: {}", s.error().message);
    return *s;
}

}  // namespace

Runner add_run(CLI::App& app) {
    struct Opts {
        DeviceOpts dev;
        std::string model, prompt_ids, prompt, logits_out, system, think = "on", experts, json_schema, chat_template;
        int n = 32;
        int64_t ctx = 0;
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        int top = 0;
        bool json = false, ignore_eos = false, prompt_top = false, chat = false, no_repack = false;
        SamplerParams sp;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf (first split) or Hugging Face folder")->required();
    add_experts_option(app, o->experts);
    auto* ids_opt = app.add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids: 1,2,3");
    auto* text_opt = app.add_option("-p,--prompt", o->prompt, "Prompt text (needs the tokenizer)");
    ids_opt->excludes(text_opt);
    auto* chat_opt = app.add_flag("--chat", o->chat, "Render -p as a user message with the model's chat template");
    chat_opt->needs(text_opt);
    app.add_option("--system", o->system, "With --chat: a system message")->needs(chat_opt);
    app.add_option("--chat-template", o->chat_template, "With --chat: a Jinja chat template (a file, or the template text) instead of the model's")->needs(chat_opt);
    app.add_option("--think", o->think, "With --chat: thinking (Qwen3 enable_thinking)")
        ->check(CLI::IsMember({"on", "off"}))
        ->needs(chat_opt)
        ->capture_default_str();
    app.add_option("-n,--n-predict", o->n, "Tokens to generate")->capture_default_str();
    app.add_option("-c,--ctx", o->ctx, "Context size (default: min(trained context, 4096), at least prompt + n)");
    app.add_option("-t,--threads,--cpu-infer", o->threads, "CPU threads")->capture_default_str();
    add_no_repack_flag(app, o->no_repack);
    add_device_options(app, o->dev);
    app.add_option("--temp", o->sp.temperature, "Temperature (0: greedy)")->capture_default_str();
    app.add_option("--top-k", o->sp.top_k, "Top-k (0: off)")->capture_default_str();
    app.add_option("--top-p", o->sp.top_p, "Top-p (1: off)")->capture_default_str();
    app.add_option("--min-p", o->sp.min_p, "Min-p (0: off)")->capture_default_str();
    app.add_option("--seed", o->sp.seed, "Sampling seed")->capture_default_str();
    app.add_flag("--ignore-eos", o->ignore_eos, "Keep generating after the end-of-sequence token");
    app.add_option("-j,--json-schema", o->json_schema,
                   "Sample the answer as JSON that this JSON Schema accepts (inline JSON, or a file); {} for any "
                   "value. With --chat and thinking, after the reasoning");
    app.add_flag("--json", o->json, "Print one JSON object: prompt_ids, ids, timings");
    app.add_option("--top", o->top, "With --json: the top N logits of every step");
    app.add_flag("--prompt-top", o->prompt_top, "With --json and --top: also the top logits after every prompt position");
    app.add_option("--logits-out", o->logits_out, "Write the last prompt position's logits (raw float32)");

    return [o]() -> int {
        if (o->prompt_ids.empty() && o->prompt.empty()) return fail("give a prompt: --prompt-ids 1,2,3 or -p TEXT");
        std::vector<int32_t> prompt;
        std::string err;
        if (o->prompt.empty() && !parse_ids(o->prompt_ids, prompt, err)) return fail(err);
        if (o->n < 0) return fail("-n must be >= 0");
        if (o->threads < 1) return fail("--threads/--cpu-infer must be >= 1");
        if (o->threads > cpu::cpu_features().n_cores)
            return fail(fmt::format("--threads/--cpu-infer {} is more than the {} cores this process may use", o->threads,
                                    cpu::cpu_features().n_cores));

        const auto t_load = Clock::now();
        auto loaded = Model::load(o->model, LoadOptions::with_experts(o->experts));
        if (!loaded) return fail(loaded.error().message);
        Model& model = **loaded;
        const HParams& h = model.hparams();
        auto tok = Tokenizer::from_gguf(model.file());
        if (!o->prompt.empty()) {
            if (!tok) return fail(tok.error().message);
            Result<std::vector<int32_t>> ids = std::vector<int32_t>();
            if (o->chat) {
                ChatConfig config;
                if (Status st = chat_config_from_model(model.file(), *tok, config, o->chat_template); !st) return fail(st.error().message);
                config.think = o->think == "on";
                chat::Json messages = chat::Json::array();
                if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});
                messages.push_back({{"role", "user"}, {"content", o->prompt}});
                ids = render_chat_prompt(config, *tok, messages);
            } else {
                ids = tok->encode(o->prompt, /*parse_special=*/true);
            }
            if (!ids) return fail("-p: " + ids.error().message);
            if (ids->empty()) return fail("-p: the prompt has no tokens");
            prompt = std::move(*ids);
        }
        const double load_ms = ms_since(t_load);

        for (int32_t id : prompt)
            if (id >= h.n_vocab)
                return fail(fmt::format("prompt token id {} is out of the vocabulary (0..{})", id, h.n_vocab - 1));
        const int64_t need = (int64_t)prompt.size() + o->n;
        int64_t ctx = o->ctx > 0 ? o->ctx : std::max<int64_t>(std::min<int64_t>(h.max_context(), 4096), need);
        if (need > ctx || need > h.max_context())
            return fail(fmt::format("prompt ({} tokens) + n ({}) = {} exceeds the context size {}", prompt.size(), o->n,
                                    need, std::min(ctx, h.max_context())));

        int64_t eos = -1;
        if (const GgufValue* v = model.file().find(key::kTokEos); v && v->is_integer()) eos = v->as_int();

        std::unique_ptr<TokenConstraint> constraint;
        if (!o->json_schema.empty()) {
            if (!tok) return fail("--json-schema needs the model's tokenizer: " + tok.error().message);
            auto schema = load_json_schema(o->json_schema);
            if (!schema) return fail(schema.error().message);
            const ThinkMode think = o->chat && o->think == "on" ? ThinkMode::may_open : ThinkMode::none;
            constraint = std::make_unique<TokenConstraint>(std::make_shared<const VocabIndex>(*tok), ConstraintSpec{*schema, think},
                                                           std::vector<int32_t>{(int32_t)eos});
        }

        ThreadPool pool(o->threads);
        auto device = open_device_for(model, o->dev, pool, o->no_repack, ctx);
        if (!device) return fail(device.error().message);
        Forward fwd(model, pool, device->get());
        KvCache kv = fwd.make_cache(ctx);
        Sampler sampler(o->sp);
        std::vector<float> logits;
        nlohmann::json steps = nlohmann::json::array();

        const auto t_prompt = Clock::now();
        const bool all = o->prompt_top && o->top > 0;
        if (Status st = fwd.eval(kv, prompt.data(), (int64_t)prompt.size(), logits, all); !st)
            return fail(st.error().message);
        const double prompt_ms = ms_since(t_prompt);
        nlohmann::json prompt_steps = nlohmann::json::array();
        if (all) {
            for (size_t i = 0; i < prompt.size(); ++i)
                prompt_steps.push_back({{"top", top_logits(logits.data() + i * h.n_vocab, h.n_vocab, o->top)}});
            logits.erase(logits.begin(), logits.end() - h.n_vocab);  // keep the last position
        }
        if (!o->logits_out.empty()) {
            std::ofstream out(o->logits_out, std::ios::binary);
            out.write(reinterpret_cast<const char*>(logits.data()), (std::streamsize)(logits.size() * sizeof(float)));
            if (!out) return fail("cannot write " + o->logits_out);
        }

        std::vector<int32_t> out_ids;
        std::string finish = "length";
        // text output needs the tokenizer; without one (a model with no tokenizer.ggml.*) print ids
        std::optional<StreamingDecoder> stream;
        if (tok) stream.emplace(*tok);
        std::string text;
        const auto t_gen = Clock::now();
        for (int i = 0; i < o->n; ++i) {
            if (o->top > 0) steps.push_back({{"top", top_logits(logits.data(), h.n_vocab, o->top)}});
            int32_t id = sampler.sample(logits.data(), h.n_vocab);
            if (constraint && (id = constraint->choose(logits.data(), h.n_vocab, id, sampler)) < 0)
                return fail("--json-schema: no token of the vocabulary can continue the document here");
            out_ids.push_back(id);
            const bool stop = id == eos && !o->ignore_eos;
            if (stream) {
                // the end-of-sequence token that stops generation is not part of the text
                const std::string piece = stop ? std::string() : stream->push(id);
                text += piece;
                if (!o->json) {
                    std::fwrite(piece.data(), 1, piece.size(), stdout);
                    std::fflush(stdout);
                }
            } else if (!o->json) {
                std::printf("%s%d", i ? " " : "", id);
                std::fflush(stdout);
            }
            if (stop) {
                finish = "eos";
                break;
            }
            if (i + 1 == o->n) break;
            if (Status st = fwd.eval(kv, &id, 1, logits); !st) return fail(st.error().message);
        }
        const double gen_ms = ms_since(t_gen);
        if (stream) {
            const std::string tail = stream->flush();
            text += tail;
            if (!o->json) std::fwrite(tail.data(), 1, tail.size(), stdout);
        }
        const double prompt_tps = prompt.size() / (prompt_ms / 1e3);
        // the first generated token comes from the prompt pass: decode speed counts the rest
        const double gen_tps = out_ids.size() > 1 ? (double)(out_ids.size() - 1) / (gen_ms / 1e3) : 0.0;

        if (o->json) {
            nlohmann::json j;
            j["prompt_ids"] = prompt;
            j["ids"] = out_ids;
            if (stream) j["text"] = text;
            j["finish_reason"] = finish;
            j["timings"] = {{"load_ms", load_ms},     {"prompt_ms", prompt_ms}, {"prompt_tok_s", prompt_tps},
                            {"decode_ms", gen_ms},    {"decode_tok_s", gen_tps}, {"threads", o->threads}};
            if (o->top > 0) j["steps"] = steps;
            if (all) j["prompt_steps"] = prompt_steps;
            std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else {
            std::printf("\n");
            std::fprintf(stderr, "prompt: %zu tokens, %.1f tok/s | decode: %zu tokens, %.2f tok/s | %d threads\n",
                         prompt.size(), prompt_tps, out_ids.size(), gen_tps, o->threads);
        }
        return 0;
    };
}

}  // namespace tandem::cli
