// `tandem serve`: the OpenAI-compatible server (option names after the seed's balance_serve).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "model/model.h"
#include "runtime/chat_session.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "tokenizer/tokenizer.h"

namespace tandem::cli {

Runner add_serve(CLI::App& app) {
    struct Opts {
        DeviceOpts dev;
        std::string model, host = "127.0.0.1", api_key, api_key_file, model_name, experts, chat_template;
        int port = 10002;
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        int64_t cache_lens = 16384, page_size = 128, chunk_size = 512, max_batch = 4, max_new = 0, max_queue = 64;
        int64_t ctx = 0, step_tokens = 0;
        int http_threads = 64;
        double max_body_mb = 8;
        bool no_prefix_cache = false, quiet_requests = false, no_repack = false, free_tool_calls = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf")->required();
    add_experts_option(app, o->experts);
    app.add_option("--host", o->host, "Address to listen on")->capture_default_str();
    app.add_option("--port", o->port, "Port (0: any free port, printed at start)")->capture_default_str();
    app.add_option("--api-key", o->api_key, "Require Authorization: Bearer KEY (default: $TANDEM_API_KEY, else none)");
    app.add_option("--api-key-file", o->api_key_file, "Read the API key from a file (first line)");
    app.add_option("--model-name", o->model_name, "Model id in the API (default: the file name without .gguf)");
    app.add_option("--chat-template", o->chat_template, "A Jinja chat template (a file, or the template text) instead of the model's");
    app.add_option("-t,--cpu-infer,--threads", o->threads, "CPU threads for inference")->capture_default_str();
    add_no_repack_flag(app, o->no_repack);
    add_device_options(app, o->dev);
    app.add_option("--cache-lens", o->cache_lens, "KV cache positions shared by all requests")->capture_default_str();
    app.add_option("--page-size", o->page_size, "Positions per KV cache page")->capture_default_str();
    app.add_option("--chunk-size", o->chunk_size, "Most prompt tokens of one request per step (chunked prefill)")
        ->capture_default_str();
    app.add_option("--max-batch-size", o->max_batch, "Requests running at once")->capture_default_str();
    app.add_option("--step-tokens", o->step_tokens, "Tokens per forward step (default: chunk size + batch size)");
    app.add_option("--max-new-tokens", o->max_new, "Cap on max_tokens of a request (default: the context)");
    app.add_option("--max-queue", o->max_queue, "Waiting requests before new ones get 429")->capture_default_str();
    app.add_option("-c,--ctx-size", o->ctx, "Positions per request (default: min(trained context, --cache-lens))");
    app.add_option("--http-threads", o->http_threads, "HTTP connections served at once")->capture_default_str();
    app.add_option("--max-body-mb", o->max_body_mb, "Largest request body (413 above)")->capture_default_str();
    app.add_flag("--no-prefix-cache", o->no_prefix_cache, "Do not reuse the KV pages of repeated prompt prefixes");
    app.add_flag("--no-tool-call-constraint", o->free_tool_calls,
                 "With tool_choice auto, do not hold what the model writes after <tool_call> to one call of the offered "
                 "tools that their parameter schemas accept (it is then parsed as written)");
    app.add_flag("--no-request-log", o->quiet_requests, "Do not log one line per request");

    return [o]() -> int {
        if (o->threads < 1) return fail("--cpu-infer must be >= 1");
        if (o->threads > cpu::cpu_features().n_cores)
            return fail(fmt::format("--cpu-infer {} is more than the {} cores this process may use", o->threads,
                                    cpu::cpu_features().n_cores));
        if (o->page_size < 1 || o->page_size > 65536) return fail("--page-size must be in 1..65536");
        if (o->cache_lens < o->page_size) return fail("--cache-lens must be at least one page (--page-size)");
        if (o->chunk_size < 1) return fail("--chunk-size must be >= 1");
        if (o->max_batch < 1) return fail("--max-batch-size must be >= 1");
        if (o->max_queue < 0) return fail("--max-queue must be >= 0");
        if (o->port < 0 || o->port > 65535) return fail("--port must be in 0..65535");
        if (o->http_threads < 2) return fail("--http-threads must be >= 2");
        if (!(o->max_body_mb > 0)) return fail("--max-body-mb must be > 0");

        std::string key = o->api_key;
        if (!o->api_key_file.empty()) {
            std::ifstream f(o->api_key_file);
            if (!f) return fail("cannot read --api-key-file " + o->api_key_file);
            std::getline(f, key);
            while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
            if (key.empty()) return fail("--api-key-file " + o->api_key_file + " is empty");
        }
        if (key.empty())
            if (const char* env = std::getenv("TANDEM_API_KEY")) key = env;

        std::fprintf(stderr, "serve: loading %s ...\n", o->model.c_str());
        auto loaded = Model::load(o->model, LoadOptions::with_experts(o->experts));
        if (!loaded) return fail(loaded.error().message);
        Model& model = **loaded;
        const HParams& h = model.hparams();
        auto tok = Tokenizer::from_gguf(model.file());
        if (!tok) return fail("the server needs the model's tokenizer: " + tok.error().message);
        ChatConfig chat;
        const Status chat_st = chat_config_from_model(model.file(), *tok, chat, o->chat_template);
        if (!chat_st && !o->chat_template.empty()) return fail(chat_st.error().message);
        const bool has_chat = (bool)chat_st;
        if (!has_chat) log::warn("the model has no chat template: /v1/chat/completions will answer 400");

        EngineConfig ec;
        ec.page_size = o->page_size;
        ec.cache_tokens = o->cache_lens;
        ec.prefix_cache = !o->no_prefix_cache;
        ec.log_requests = !o->quiet_requests;
        ec.sched.max_batch_size = o->max_batch;
        ec.sched.chunk_size = o->chunk_size;
        ec.sched.step_tokens = o->step_tokens > 0 ? o->step_tokens : o->chunk_size + o->max_batch;
        ec.sched.max_seq_len = o->ctx > 0 ? std::min(o->ctx, h.max_context()) : std::min(h.max_context(), o->cache_lens);
        ec.sched.max_queue = o->max_queue;
        if (o->dev.gpu_prefill > ec.sched.step_tokens)
            log::warn("--gpu-prefill {} is more than a step ever carries ({} tokens: --chunk-size + --max-batch-size, "
                      "or --step-tokens): it never applies; raise --chunk-size",
                      o->dev.gpu_prefill, ec.sched.step_tokens);

        ServerConfig sc;
        sc.host = o->host;
        sc.port = o->port;
        sc.api_key = key;
        sc.model_name = o->model_name.empty() ? std::filesystem::path(o->model).stem().string() : o->model_name;
        sc.max_body_bytes = (size_t)(o->max_body_mb * 1024 * 1024);
        sc.http_threads = o->http_threads;
        sc.limits.max_tokens_cap = o->max_new > 0 ? o->max_new : ec.sched.max_seq_len;
        sc.limits.default_max_tokens = std::min<int64_t>(sc.limits.max_tokens_cap, 1024);
        sc.limits.constrain_tool_calls = !o->free_tool_calls;

        // SIGINT/SIGTERM are taken by one thread (sigwait) that stops the server cleanly; every
        // other thread, created after this, has them blocked. Writes to closed sockets must
        // not kill the process.
        signal(SIGPIPE, SIG_IGN);
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

        ThreadPool pool(o->threads);
        auto device = open_device_for(model, o->dev, pool, o->no_repack, o->cache_lens);
        if (!device) return fail(device.error().message);
        ec.device = device->get();
        Engine engine(model, *tok, pool, ec);
        ApiServer server(engine, *tok, has_chat ? &chat : nullptr, sc);
        if (Status st = server.bind(); !st) return fail(st.error().message);
        std::thread sig_thread([&] {
            int sig = 0;
            sigwait(&sigs, &sig);
            if (sig != 0) log::info("signal {}: stopping", sig);
            server.stop();
        });
        std::printf("tandem serve: model %s (%s) on http://%s:%d  [%d threads, KV %lld positions in pages of %lld, "
                    "batch %lld, context %lld%s]\n",
                    sc.model_name.c_str(), o->model.c_str(), o->host.c_str(), server.port(), o->threads,
                    (long long)o->cache_lens, (long long)o->page_size, (long long)o->max_batch,
                    (long long)ec.sched.max_seq_len, key.empty() ? "" : ", API key required");
        std::fflush(stdout);
        server.run();
        engine.stop();
        pthread_kill(sig_thread.native_handle(), SIGTERM);  // wakes sigwait if the server stopped otherwise
        sig_thread.join();
        std::fprintf(stderr, "serve: stopped\n");
        return 0;
    };
}

}  // namespace tandem::cli
