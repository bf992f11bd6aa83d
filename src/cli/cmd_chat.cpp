// `tandem chat`: the terminal front end of ChatSession. Interactive on a terminal (prompt,
// colours, Ctrl-C stops an answer); line by line, undecorated, through a pipe.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <thread>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/chat_session.h"
#include "tokenizer/tokenizer.h"

namespace tandem::cli {
namespace {

// Set by the SIGINT handler, cleared by the chat loop. A signal handler can only reach a
// global; nothing else touches it.
std::atomic<bool> g_interrupt{false};

extern "C" void on_sigint(int) { g_interrupt.store(true); }

void install_sigint() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a read() at the prompt returns EINTR
    sigaction(SIGINT, &sa, nullptr);
}

void out(const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
}

// Lines from stdin with read(2), so that Ctrl-C interrupts a waiting read.
class LineReader {
public:
    enum class Got { line, eof, interrupted };
    Got next(std::string& line) {
        for (;;) {
            if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
                line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                return Got::line;
            }
            if (eof_) {
                if (buf_.empty()) return Got::eof;
                line.swap(buf_);
                buf_.clear();
                return Got::line;
            }
            char chunk[4096];
            const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
            if (n > 0) buf_.append(chunk, (size_t)n);
            else if (n == 0) eof_ = true;
            else if (errno == EINTR) {
                if (g_interrupt.load()) {
                    buf_.clear();  // the terminal dropped the half-typed line too
                    return Got::interrupted;
                }
            } else {
                eof_ = true;
            }
        }
    }

private:
    std::string buf_;
    bool eof_ = false;
};

const char* kDim = "\x1b[2m";
const char* kGrey = "\x1b[90m";
const char* kBold = "\x1b[1m";
const char* kReset = "\x1b[0m";

struct Ui {
    bool tty_in = false, tty_out = false;
    std::string color(const char* code) const { return tty_out ? code : ""; }
    void prompt(bool continuation) const {
        if (tty_in && tty_out) out(color(kBold) + (continuation ? "... " : "> ") + color(kReset));
    }
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// One message: a line, lines joined by a trailing backslash, or a """ ... """ block.
LineReader::Got read_message(LineReader& in, const Ui& ui, std::string& msg) {
    std::string line;
    ui.prompt(false);
    if (auto got = in.next(line); got != LineReader::Got::line) return got;
    msg.clear();
    if (trim(line) == "\"\"\"") {
        bool first = true;
        for (;;) {
            ui.prompt(true);
            if (auto got = in.next(line); got != LineReader::Got::line) return got;
            if (trim(line) == "\"\"\"") return LineReader::Got::line;
            if (!first) msg += '\n';
            msg += line;
            first = false;
        }
    }
    while (ends_with(line, "\\")) {
        line.pop_back();
        msg += line + '\n';
        ui.prompt(true);
        if (auto got = in.next(line); got != LineReader::Got::line) return got;
    }
    msg += line;
    return LineReader::Got::line;
}

const char* kHelp =
    "commands: /reset (forget the conversation), /system TEXT (set or, empty, remove the system message),\n"
    "  /think on|off, /save FILE (the conversation as JSON messages), /exit. A line ending with \\ continues;\n"
    "  \"\"\" starts and ends a multi-line block. Ctrl-C stops an answer; twice at the prompt exits.\n";

}  // namespace

Runner add_chat(CLI::App& app) {
    struct Opts {
        DeviceOpts dev;
        std::string model, system, think = "on", experts, chat_template;
        int n = 1024;
        int64_t ctx = 0;
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        SamplerParams sp;
        bool no_repack = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf (first split) or Hugging Face folder")->required();
    add_experts_option(app, o->experts);
    add_no_repack_flag(app, o->no_repack);
    add_device_options(app, o->dev);
    app.add_option("--system", o->system, "System message");
    app.add_option("--chat-template", o->chat_template, "A Jinja chat template (a file, or the template text) instead of the model's");
    app.add_option("--think", o->think, "Thinking (Qwen3 enable_thinking)")
        ->check(CLI::IsMember({"on", "off"}))
        ->capture_default_str();
    app.add_option("-n,--max-tokens", o->n, "Most tokens per answer")->capture_default_str();
    app.add_option("-c,--ctx", o->ctx, "Context size (default: min(trained context, 4096))");
    app.add_option("-t,--threads", o->threads, "CPU threads")->capture_default_str();
    app.add_option("--temp", o->sp.temperature, "Temperature (0: greedy)")->capture_default_str();
    app.add_option("--top-k", o->sp.top_k, "Top-k (0: off)")->capture_default_str();
    app.add_option("--top-p", o->sp.top_p, "Top-p (1: off)")->capture_default_str();
    app.add_option("--min-p", o->sp.min_p, "Min-p (0: off)")->capture_default_str();
    app.add_option("--seed", o->sp.seed, "Sampling seed")->capture_default_str();

    return [o]() -> int {
        if (o->n < 1) return fail("--max-tokens must be >= 1");
        if (o->threads < 1) return fail("--threads must be >= 1");
        auto loaded = Model::load(o->model, LoadOptions::with_experts(o->experts));
        if (!loaded) return fail(loaded.error().message);
        Model& model = **loaded;
        auto tok = Tokenizer::from_gguf(model.file());
        if (!tok) return fail(tok.error().message);

        ChatConfig config;
        if (Status st = chat_config_from_model(model.file(), *tok, config, o->chat_template); !st) return fail(st.error().message);
        const int64_t n_train = model.hparams().max_context();
        config.n_ctx = o->ctx > 0 ? std::min(o->ctx, n_train) : std::min<int64_t>(n_train, 4096);
        config.max_tokens = o->n;
        config.system = o->system;
        config.think = o->think == "on";
        config.sampler = o->sp;

        ThreadPool pool(o->threads);
        auto device = open_device_for(model, o->dev, pool, o->no_repack, config.n_ctx);
        if (!device) return fail(device.error().message);
        Forward fwd(model, pool, device->get());
        ChatSession chat(fwd, *tok, config);

        Ui ui;
        ui.tty_in = isatty(STDIN_FILENO) != 0;
        ui.tty_out = isatty(STDOUT_FILENO) != 0;
        install_sigint();
        if (ui.tty_in && ui.tty_out)
            out(fmt::format("{}tandem chat: {} (context {}, thinking {}). /help for commands.{}\n", ui.color(kDim),
                            o->model, config.n_ctx, o->think, ui.color(kReset)));

        LineReader in;
        int exit_code = 0;
        bool interrupted_at_prompt = false;
        std::string msg;
        for (;;) {
            const auto got = read_message(in, ui, msg);
            if (got == LineReader::Got::eof) {
                if (ui.tty_in && ui.tty_out) out("\n");
                break;
            }
            if (got == LineReader::Got::interrupted) {
                g_interrupt.store(false);
                if (interrupted_at_prompt) {
                    out("\n");
                    break;
                }
                interrupted_at_prompt = true;
                out(ui.color(kDim) + "\n(Ctrl-C again to exit, or /exit)" + ui.color(kReset) + "\n");
                continue;
            }
            interrupted_at_prompt = false;
            if (trim(msg).empty()) continue;

            if (msg[0] == '/') {
                const std::string cmd = msg.substr(0, msg.find_first_of(" \t\n"));
                const std::string arg = cmd.size() < msg.size() ? trim(msg.substr(cmd.size() + 1)) : "";
                auto note = [&](const std::string& s) { out(ui.color(kDim) + s + ui.color(kReset) + "\n"); };
                if (cmd == "/exit" || cmd == "/quit") break;
                if (cmd == "/help") {
                    out(kHelp);
                } else if (cmd == "/reset") {
                    chat.reset();
                    if (ui.tty_out) note("(conversation cleared)");
                } else if (cmd == "/system") {
                    chat.set_system(arg);
                    if (ui.tty_out) note(arg.empty() ? "(system message removed)" : "(system message set)");
                } else if (cmd == "/think" && (arg == "on" || arg == "off")) {
                    chat.set_think(arg == "on");
                    if (ui.tty_out) note("(thinking " + arg + ")");
                } else if (cmd == "/save" && !arg.empty()) {
                    std::ofstream f(arg, std::ios::binary);
                    f << chat.messages().dump(2, ' ', false, chat::Json::error_handler_t::replace) << "\n";
                    f.close();  // written and closed before the confirmation is shown
                    if (!f) {
                        std::fprintf(stderr, "tandem: error: %s: cannot write\n", arg.c_str());
                        exit_code = kExitError;
                    } else if (ui.tty_out) {
                        note("(saved " + std::to_string(chat.messages().size()) + " messages to " + arg + ")");
                    }
                } else {
                    std::fprintf(stderr, "tandem: error: unknown command or missing argument: %s (try /help)\n",
                                 msg.c_str());
                    if (!ui.tty_in) exit_code = kExitUsage;
                }
                continue;
            }

            bool in_thinking = false, any = false;
            auto on_piece = [&](const ChatPiece& p) {
                if (p.thinking && !in_thinking) out(std::string(any ? "\n" : "") + (ui.tty_out ? kGrey : "[thinking] "));
                else if (!p.thinking && in_thinking) out(ui.color(kReset) + "\n");
                in_thinking = p.thinking;
                any = true;
                out(p.text);
            };
            g_interrupt.store(false);
            auto stats = chat.send(msg, on_piece, &g_interrupt);
            if (in_thinking) out(ui.color(kReset));
            out("\n");
            if (!stats) {
                std::fprintf(stderr, "tandem: error: %s\n", stats.error().message.c_str());
                exit_code = kExitError;
                continue;
            }
            const bool stopped = stats->finish == "interrupted";
            g_interrupt.store(false);
            std::string line = fmt::format("[{}{} tokens, {:.1f} tok/s | prompt {} tokens, {} cached, {:.0f} ms{}]",
                                           stopped ? "interrupted, " : "", stats->n_generated, stats->decode_tok_s(),
                                           stats->n_prompt, stats->n_reused, stats->prefill_ms,
                                           stats->n_dropped ? fmt::format(" | {} old messages dropped",
                                                                          stats->n_dropped)
                                                            : "");
            if (ui.tty_out) out(ui.color(kDim) + line + ui.color(kReset) + "\n");
            else std::fprintf(stderr, "%s\n", line.c_str());
        }
        return exit_code;
    };
}

}  // namespace tandem::cli
