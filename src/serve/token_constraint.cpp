#include "serve/token_constraint.h"

#include <algorithm>
#include <limits>

#include "formats/hf_tokenizer.h"
#include "serve/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace tandem {

VocabIndex::VocabIndex(const Tokenizer& tok) {
    by_id_.resize((size_t)tok.n_vocab());
    for (int32_t id = 0; id < tok.n_vocab(); ++id) {
        const int32_t type = tok.token_type(id);
        const std::string_view b = tok.token_bytes(id);
        if ((type != (int32_t)TokenType::normal && type != (int32_t)TokenType::byte) || b.empty()) continue;
        by_id_[(size_t)id] = b;
        entries_.push_back({b, id, 0});
    }
    think_open_ = tok.special_id("<think>");
    think_close_ = tok.special_id("</think>");
    std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.bytes < b.bytes || (a.bytes == b.bytes && a.id < b.id); });
    for (size_t i = 1; i < entries_.size(); ++i) {
        const std::string_view a = entries_[i - 1].bytes, b = entries_[i].bytes;
        int32_t l = 0;
        while (l < (int32_t)a.size() && l < (int32_t)b.size() && a[(size_t)l] == b[(size_t)l]) ++l;
        entries_[i].lcp = l;
    }
}

bool DocMatcher::guard_byte(uint8_t c) {
    constexpr std::string_view kOpen = kToolCallOpen, kClose = kToolCallClose;  // ('<' only first in each)
    open_ = (int8_t)(c == (uint8_t)kOpen[(size_t)open_] ? open_ + 1 : c == '<' ? 1 : 0);
    close_ = (int8_t)(c == (uint8_t)kClose[(size_t)close_] ? close_ + 1 : c == '<' ? 1 : 0);
    return open_ < (int8_t)kOpen.size() && close_ < (int8_t)kClose.size();
}

TokenConstraint::TokenConstraint(std::shared_ptr<const VocabIndex> vocab, const ConstraintSpec& spec, std::vector<int32_t> end_ids)
    : vocab_(std::move(vocab)),
      spec_(spec),
      matcher_(spec),
      trial_(spec),
      state_(State::active),
      think_open_(vocab_->think_open()),
      think_close_(vocab_->think_close()),
      end_ids_(std::move(end_ids)),
      lazy_(spec.trigger >= 0 && spec.trigger_end >= 0),
      trigger_(spec.trigger),
      triggers_left_(spec.max_triggers) {
    if (lazy_) {
        end_ids_ = {spec.trigger_end};
        state_ = State::free;
    }
    if (spec.think == ThinkMode::free_until_close && think_close_ >= 0) state_ = State::thinking;
    else if (!lazy_ && spec.think == ThinkMode::may_open && think_open_ >= 0 && think_close_ >= 0) state_ = State::first;
}

bool TokenConstraint::is_end(int32_t id) const { return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end(); }

bool TokenConstraint::allows(int32_t id) const {
    if (state_ == State::thinking) return true;
    if (state_ == State::free) return id != trigger_ || triggers_left_ != 0;
    if (state_ == State::first && id == think_open_) return true;
    if (is_end(id)) return matcher_.can_end();
    const std::string_view* t = vocab_->text(id);
    if (!t) return false;
    DocMatcher m = matcher_;
    return m.feed(*t);
}

bool TokenConstraint::take(int32_t id) {
    if (state_ == State::thinking) {
        if (id == think_close_) state_ = lazy_ ? State::free : State::active;
        return true;
    }
    if (state_ == State::free) {
        if (id == trigger_) {
            if (triggers_left_ == 0) return false;
            if (triggers_left_ > 0) --triggers_left_;
            matcher_ = DocMatcher(spec_);
            state_ = State::active;
            content_seen_ = true;
        } else if (id == think_open_ && think_close_ >= 0 && !content_seen_) {
            state_ = State::thinking;
        } else if (!content_seen_) {
            const std::string_view* t = vocab_->text(id);
            content_seen_ = !t || t->find_first_not_of(" \n\r\t") != std::string_view::npos;
        }
        return true;
    }
    if (state_ == State::first && id == think_open_) {
        state_ = State::thinking;
        return true;
    }
    if (is_end(id)) {
        if (!matcher_.can_end()) return false;
        if (lazy_) state_ = State::free;
        return true;
    }
    const std::string_view* t = vocab_->text(id);
    if (!t) return false;
    trial_ = matcher_;
    if (!trial_.feed(*t)) return false;
    std::swap(matcher_, trial_);
    state_ = State::active;
    return true;
}

void TokenConstraint::allowed_ids(std::vector<uint8_t>& ok) const {
    ok.assign((size_t)vocab_->n_vocab(), 0);
    if (state_ == State::thinking || state_ == State::free) {
        std::fill(ok.begin(), ok.end(), 1);
        if (state_ == State::free && triggers_left_ == 0 && trigger_ >= 0 && trigger_ < (int32_t)ok.size())
            ok[(size_t)trigger_] = 0;
        return;
    }
    if (state_ == State::first && think_open_ >= 0 && think_open_ < (int32_t)ok.size()) ok[(size_t)think_open_] = 1;
    if (matcher_.can_end())
        for (int32_t id : end_ids_)
            if (id >= 0 && id < (int32_t)ok.size()) ok[(size_t)id] = 1;
    // levels_[d]: the matcher after the first d bytes of the current token; `dead`: the length of
    // the shortest prefix of the last token that was rejected (tokens sharing it are too)
    const auto& es = vocab_->entries();
    if (levels_.empty()) levels_.assign(1, matcher_);
    levels_[0] = matcher_;
    int32_t dead = std::numeric_limits<int32_t>::max();
    for (const VocabIndex::Entry& e : es) {
        if (e.lcp >= dead) continue;  // starts with a rejected prefix
        dead = std::numeric_limits<int32_t>::max();
        const int32_t n = (int32_t)e.bytes.size();
        if ((int32_t)levels_.size() < n + 1) levels_.resize((size_t)n + 1, matcher_);
        bool alive = true;
        for (int32_t d = e.lcp; d < n; ++d) {
            levels_[(size_t)d + 1] = levels_[(size_t)d];
            if (!levels_[(size_t)d + 1].feed_byte((uint8_t)e.bytes[(size_t)d])) {
                dead = d + 1;
                alive = false;
                break;
            }
        }
        if (alive) ok[(size_t)e.id] = 1;
    }
}

int32_t TokenConstraint::choose(float* logits, int64_t n_vocab, int32_t sampled, Sampler& sampler) {
    if (!take(sampled)) {
        allowed_ids(ok_);
        bool any = false;
        for (int64_t i = 0; i < n_vocab; ++i) {
            if (i < (int64_t)ok_.size() && ok_[(size_t)i]) any = true;
            else logits[i] = -std::numeric_limits<float>::infinity();
        }
        if (!any) return -1;
        sampled = sampler.sample(logits, n_vocab);
        if (!take(sampled)) return -1;  // (the sampler returned a masked token: cannot happen)
    }
    return sampled;
}

}  // namespace tandem
