#include "runtime/chat_session.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>

#include "chat/chat_template.h"
#include "core/log.h"
#include "formats/gguf.h"
#include "model/arch.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

double TurnStats::decode_tok_s() const {
    // the first answer id comes from the prefill's logits: decode speed counts the rest
    return n_generated > 1 && decode_ms > 0 ? (double)(n_generated - 1) / (decode_ms / 1e3) : 0.0;
}

Status chat_config_from_model(const GgufFile& file, const Tokenizer& tok, ChatConfig& config,
                              const std::string& override_template) {
    if (!override_template.empty()) {
        const bool inline_text = override_template.find("{%") != std::string::npos ||
                                 override_template.find("{{") != std::string::npos;
        std::string text = override_template;
        if (!inline_text) {
            std::ifstream in(override_template, std::ios::binary);
            if (!in) return make_error("--chat-template: cannot read {}", override_template);
            text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            if (text.empty()) return make_error("--chat-template: {} is empty", override_template);
        }
        if (auto parsed = ChatTemplate::parse(text); !parsed)
            return make_error("--chat-template: {}", parsed.error().message);
        config.chat_template = std::move(text);
    } else {
        const GgufValue* t = file.find(key::kChatTemplate);
        if (!t || t->type != GgufType::STRING || t->str.empty())
            return make_error("{}: the model has no chat template (give one with --chat-template FILE)",
                              key::kChatTemplate);
        config.chat_template = t->str;
    }
    config.bos_token = tok.valid_id(tok.bos_id()) ? std::string(tok.token_bytes(tok.bos_id())) : std::string();
    config.eos_token = tok.valid_id(tok.eos_id()) ? std::string(tok.token_bytes(tok.eos_id())) : std::string();
    config.stop_ids.clear();
    if (tok.valid_id(tok.eos_id())) config.stop_ids.push_back(tok.eos_id());
    for (const char* s : {"<|im_end|>", "<|endoftext|>"})
        if (int32_t id = tok.special_id(s); id >= 0 && id != tok.eos_id()) config.stop_ids.push_back(id);
    return ok_status();
}

Result<std::vector<int32_t>> render_chat_prompt(const ChatConfig& config, const Tokenizer& tok,
                                                const chat::Json& messages) {
    const chat::Json kwargs = {{"enable_thinking", config.think}};
    TANDEM_ASSIGN(std::string text, render_chat(config.chat_template, messages, chat::Json(),
                                                /*add_generation_prompt=*/true, kwargs, config.bos_token,
                                                config.eos_token));
    auto ids = tok.encode(text, /*parse_special=*/true);
    if (!ids) return make_error("chat prompt: {}", ids.error().message);
    if (ids->empty()) return make_error("chat prompt: the template rendered no tokens");
    return ids;
}

ChatSession::ChatSession(Forward& fwd, const Tokenizer& tok, ChatConfig config)
    : fwd_(fwd), tok_(tok), config_(std::move(config)), kv_(fwd.make_cache(config_.n_ctx)), sampler_(config_.sampler) {
    think_open_ = tok.special_id("<think>");
    think_close_ = tok.special_id("</think>");
}

chat::Json ChatSession::messages() const {
    chat::Json all = chat::Json::array();
    if (!config_.system.empty()) all.push_back({{"role", "system"}, {"content", config_.system}});
    for (const auto& m : history_) all.push_back(m);
    return all;
}

void ChatSession::reset() { history_ = chat::Json::array(); }

void ChatSession::set_system(const std::string& text) { config_.system = text; }

Result<int64_t> ChatSession::prefill(const std::vector<int32_t>& prompt, std::vector<float>& logits) {
    if (prompt.empty()) return make_error("chat: empty prompt");
    if ((int64_t)prompt.size() > kv_.n_ctx)
        return make_error("chat: the prompt ({} tokens) does not fit the context ({})", prompt.size(), kv_.n_ctx);
    size_t p = 0;
    while (p < cached_.size() && p < prompt.size() && cached_[p] == prompt[p]) ++p;
    if (p == prompt.size()) --p;  // the last position is evaluated again for its logits
    cached_.resize(p);
    kv_.n_past = (int64_t)p;
    if (Status st = fwd_.eval(kv_, prompt.data() + p, (int64_t)(prompt.size() - p), logits); !st) {
        cached_.clear();  // unknown how far it got: start from an empty cache next time
        kv_.n_past = 0;
        return st.error();
    }
    cached_.insert(cached_.end(), prompt.begin() + (std::ptrdiff_t)p, prompt.end());
    return (int64_t)p;
}

Result<std::vector<int32_t>> ChatSession::fit_prompt(const chat::Json& user_msg, int& n_dropped) {
    const int64_t reserve = std::min<int64_t>(config_.max_tokens, config_.n_ctx / 2);
    n_dropped = 0;
    for (;;) {
        chat::Json all = messages();
        all.push_back(user_msg);
        TANDEM_ASSIGN(std::vector<int32_t> ids, render_chat_prompt(config_, tok_, all));
        if ((int64_t)ids.size() + reserve <= config_.n_ctx) return ids;
        if (history_.empty())
            return make_error("chat: the message ({} tokens with the template) + {} answer tokens do not fit the "
                              "context ({})",
                              ids.size(), reserve, config_.n_ctx);
        // drop the oldest turn: its user message and everything up to the next user message
        size_t end = 1;
        while (end < history_.size() && history_[end].value("role", "") != "user") ++end;
        history_.erase(history_.begin(), history_.begin() + (std::ptrdiff_t)end);
        n_dropped += (int)end;
    }
}

Result<TurnStats> ChatSession::send(const std::string& user, const std::function<void(const ChatPiece&)>& on_piece,
                                    const std::atomic<bool>* interrupt) {
    TurnStats stats;
    const chat::Json user_msg = {{"role", "user"}, {"content", user}};
    TANDEM_ASSIGN(std::vector<int32_t> prompt, fit_prompt(user_msg, stats.n_dropped));
    stats.n_prompt = (int64_t)prompt.size();
    if (log::level() <= log::Level::debug)
        if (auto text = tok_.decode(prompt)) log::debug("chat prompt ({} tokens):\n{}", prompt.size(), *text);

    std::vector<float> logits;
    const auto t_prefill = Clock::now();
    TANDEM_ASSIGN(stats.n_reused, prefill(prompt, logits));
    stats.prefill_ms = ms_since(t_prefill);
    history_.push_back(user_msg);

    // with thinking off the prompt already closed the think block; with it on the model opens it
    bool thinking = false;
    std::string answer, reasoning;
    StreamingDecoder stream(tok_);
    auto emit = [&](const std::string& text) {
        if (text.empty()) return;
        (thinking ? reasoning : answer) += text;
        if (on_piece) on_piece(ChatPiece{text, thinking});
    };
    stats.finish = "length";
    const int64_t n_vocab = (int64_t)(logits.size());
    const auto t_decode = Clock::now();
    Status failed = ok_status();
    for (int i = 0; i < config_.max_tokens; ++i) {
        if (interrupt && interrupt->load()) {
            stats.finish = "interrupted";
            break;
        }
        const int32_t id = sampler_.sample(logits.data(), n_vocab);
        ++stats.n_generated;
        if (std::find(config_.stop_ids.begin(), config_.stop_ids.end(), id) != config_.stop_ids.end()) {
            stats.finish = "stop";
            break;
        }
        if (id == think_open_ || id == think_close_) {
            emit(stream.flush());
            thinking = id == think_open_;
        } else {
            emit(stream.push(id));
        }
        if (i + 1 == config_.max_tokens || kv_.n_past >= kv_.n_ctx) break;  // "length"
        if (Status st = fwd_.eval(kv_, &id, 1, logits); !st) {
            failed = st;
            cached_.clear();
            kv_.n_past = 0;
            break;
        }
        cached_.push_back(id);
    }
    emit(stream.flush());
    stats.decode_ms = ms_since(t_decode);

    // Qwen3 writes "</think>\n\n" before the answer; history keeps the answer without it
    answer.erase(0, std::min(answer.find_first_not_of('\n'), answer.size()));
    chat::Json reply = {{"role", "assistant"}, {"content", answer}};
    if (!reasoning.empty()) {
        const size_t b = reasoning.find_first_not_of('\n');
        const size_t e = reasoning.find_last_not_of('\n');
        reply["reasoning_content"] = b == std::string::npos ? std::string() : reasoning.substr(b, e - b + 1);
    }
    history_.push_back(std::move(reply));
    if (!failed) return failed.error();
    return stats;
}

}  // namespace tandem
