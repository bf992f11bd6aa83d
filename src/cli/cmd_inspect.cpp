#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/device_option.h"
#include "model/merge.h"
#include "model/model.h"
#include "model/model_stats.h"
#include "placement/placement.h"

namespace tandem::cli {
namespace {

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        ++u;
    }
    return fmt::format("{:.2f} {}", b, units[u]);
}

}  // namespace

Runner add_inspect(CLI::App& app) {
    struct Opts {
        std::string model;
        bool json = false, no_tensors = false, metadata = false;
        std::string rules;
        double gpu_mem = 0;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("model", o->model,
                   "Model .gguf (first split for split files) or Hugging Face folder (config.json, *.safetensors)")
        ->required();
    app.add_flag("--json", o->json, "Print one JSON object");
    app.add_flag("--no-tensors", o->no_tensors, "Omit the tensor table");
    app.add_flag("--metadata", o->metadata, "Also list every metadata key");
    app.add_option("--rules", o->rules,
                   "Placement rules (YAML file, or 'auto' for the built-in defaults): print each tensor's device "
                   "and the bytes per device");
    app.add_option("--gpu-mem", o->gpu_mem, "GiB of memory per CUDA device (default: detected)")
        ->check(CLI::PositiveNumber);

    return [o]() -> int {
        auto loaded = Model::load(o->model, LoadOptions::inspect());
        if (!loaded) return fail(loaded.error().message);
        const Model& m = **loaded;
        const HParams& h = m.hparams();
        const GgufFile& f = m.file();

        std::optional<PlacementOut> pl;
        if (!o->rules.empty()) {
            auto r = plan_placement(m, o->rules, o->gpu_mem);
            if (!r) return fail(r.error().message);
            pl = std::move(*r);
        }

        const ModelStats st = model_stats(m);
        const double total = st.total_bytes, active = st.active_bytes, n_params = st.n_params,
                     active_params = st.active_params;

        auto str_or = [&](const char* k) -> std::string {
            const GgufValue* v = f.find(k);
            return v && v->type == GgufType::STRING ? v->str : "";
        };
        auto int_or = [&](const char* k) -> int64_t {
            const GgufValue* v = f.find(k);
            return v && v->is_integer() ? v->as_int() : -1;
        };
        const GgufValue* toks = f.find(key::kTokTokens);
        const GgufValue* merges = f.find(key::kTokMerges);
        const int64_t n_tokens = toks ? (int64_t)toks->array_len : 0;
        const int64_t n_merges = merges ? (int64_t)merges->array_len : 0;
        const bool has_template = f.find(key::kChatTemplate) != nullptr;

        if (o->json) {
            nlohmann::json j;
            j["file"] = o->model;
            j["format"] = f.version() > 0 ? "gguf" : is_merged_folder(o->model) ? "merged" : "hf";
            j["quantization"] = str_or(key::kTandemQuantization);
            j["gguf_version"] = f.version();
            j["n_files"] = f.n_files();
            j["architecture"] = std::string(arch_name(h.arch));
            j["hparams"] = {{"n_vocab", h.n_vocab}, {"n_ctx_train", h.n_ctx_train}, {"n_embd", h.n_embd},
                            {"n_layer", h.n_layer}, {"n_head", h.n_head}, {"n_head_kv", h.n_head_kv},
                            {"head_dim", h.head_dim}, {"n_expert", h.n_expert}, {"n_expert_used", h.n_expert_used},
                            {"n_ff_exp", h.n_ff_exp}, {"n_ff", h.n_ff}, {"rms_eps", h.rms_eps},
                            {"rope_base", h.rope_base}, {"rope_scaling", h.rope_scaling},
                            {"rope_scaling_factor", h.rope_scaling_factor}};
            j["tokenizer"] = {{"model", str_or(key::kTokModel)}, {"pre", str_or(key::kTokPre)},
                              {"n_tokens", n_tokens}, {"n_merges", n_merges}, {"bos", int_or(key::kTokBos)},
                              {"eos", int_or(key::kTokEos)}, {"pad", int_or(key::kTokPad)},
                              {"chat_template", has_template}};
            j["total_bytes"] = total;
            j["active_bytes_per_token"] = active;
            j["n_params"] = n_params;
            j["active_params_per_token"] = active_params;
            if (!o->no_tensors) {
                j["tensors"] = nlohmann::json::array();
                size_t i = 0;
                for (const auto& t : f.tensors()) {
                    j["tensors"].push_back({{"name", t.name}, {"type", std::string(dtype_name(t.type))},
                                            {"shape", t.ne}, {"bytes", t.n_bytes}, {"file", t.file_index}});
                    if (!t.source.empty()) j["tensors"].back()["source"] = t.source;
                    if (pl) j["tensors"].back()["device"] = pl->plan.tensors[i].device.str();
                    ++i;
                }
            }
            if (pl) {
                nlohmann::json bytes = nlohmann::json::object();
                for (const auto& [d, b] : pl->plan.bytes) bytes[d.str()] = b;
                j["placement"] = {{"rules", pl->rules.source}, {"bytes", bytes}};
                if (!pl->gpu_bytes.empty()) j["placement"]["gpu_bytes_available"] = pl->gpu_bytes;
            }
            std::printf("%s\n", j.dump(2).c_str());
            return 0;
        }

        std::printf("file          %s (%s, %d file%s)\n", o->model.c_str(), f.format().c_str(), f.n_files(),
                    f.n_files() > 1 ? "s" : "");
        std::printf("architecture  %s  (%s)\n", std::string(arch_name(h.arch)).c_str(), str_or(key::kName).c_str());
        std::printf("vocab         %lld    context %lld\n", (long long)h.n_vocab, (long long)h.n_ctx_train);
        std::printf("hidden        %lld    layers %lld\n", (long long)h.n_embd, (long long)h.n_layer);
        std::printf("attention     %lld q heads, %lld kv heads, head_dim %lld (q width %lld)\n", (long long)h.n_head,
                    (long long)h.n_head_kv, (long long)h.head_dim, (long long)h.n_q());
        if (h.is_moe())
            std::printf("experts       %lld, %lld used per token, expert ff %lld\n", (long long)h.n_expert,
                        (long long)h.n_expert_used, (long long)h.n_ff_exp);
        else
            std::printf("ffn           %lld\n", (long long)h.n_ff);
        std::printf("norm eps      %g    rope base %g\n", h.rms_eps, h.rope_base);
        if (!h.rope_scaling.empty()) {
            const Status st = h.check_forward_support(o->model);
            std::printf("rope scaling  %s, factor %g, original context %lld%s\n", h.rope_scaling.c_str(),
                        h.rope_scaling_factor, (long long)h.rope_scaling_orig_ctx,
                        st.ok() ? fmt::format(": contexts up to {}", h.max_context()).c_str()
                                : " (not supported by the forward)");
        }
        std::printf("tokenizer     %s/%s, %lld tokens, %lld merges, bos %lld eos %lld pad %lld, chat template: %s\n",
                    str_or(key::kTokModel).c_str(), str_or(key::kTokPre).c_str(), (long long)n_tokens,
                    (long long)n_merges, (long long)int_or(key::kTokBos), (long long)int_or(key::kTokEos),
                    (long long)int_or(key::kTokPad), has_template ? "yes" : "no");
        if (const std::string q = str_or(key::kTandemQuantization); !q.empty())
            std::printf("quantization  %s (int8 matrices run as W8A8 on the CPU)\n", q.c_str());
        std::printf("size          %s in %zu tensors, %.3f B params\n", human_bytes(total).c_str(), f.tensors().size(),
                    n_params / 1e9);
        std::printf("per token     %s read, %.3f B active params\n", human_bytes(active).c_str(), active_params / 1e9);
        if (o->metadata) {
            std::printf("\nmetadata\n");
            for (const auto& [k, v] : f.metadata())
                std::printf("  %-44s %-7s %s\n", k.c_str(), gguf_type_name(v.type), v.to_string().c_str());
        }
        if (!o->no_tensors) {
            std::printf("\n%-36s %-6s %-22s %12s%s\n", "tensor", "type", "shape", "bytes", pl ? "  device" : "");
            size_t i = 0;
            for (const auto& t : f.tensors()) {
                std::printf("%-36s %-6s %-22s %12llu", t.name.c_str(), std::string(dtype_name(t.type)).c_str(),
                            fmt::format("[{}]", fmt::join(t.ne, ", ")).c_str(), (unsigned long long)t.n_bytes);
                if (pl) std::printf("  %s", pl->plan.tensors[i].device.str().c_str());
                std::printf("\n");
                ++i;
            }
        }
        if (pl) {
            std::printf("\nplacement     %s\n", pl->rules.source.c_str());
            for (const auto& [d, b] : pl->plan.bytes) {
                std::printf("  %-8s %s", d.str().c_str(), human_bytes((double)b).c_str());
                if (d.kind == placement::Device::Kind::cuda && (size_t)d.index < pl->gpu_bytes.size())
                    std::printf(" of %s available", human_bytes((double)pl->gpu_bytes[(size_t)d.index]).c_str());
                std::printf("\n");
            }
        }
        return 0;
    };
}

}  // namespace tandem::cli
