// A response_format on tokens: which tokens may come next so that the response stays a prefix of
// a document its JSON Schema accepts (json_schema.h), applied while sampling. The sampled token
// is checked first (usually it fits: one copy of the matcher state and its bytes fed); only when
// it does not is the whole vocabulary checked (a walk over the token texts in sorted order, each
// shared prefix fed once, a rejected prefix skipping every token that starts with it), the
// tokens that cannot continue set to -inf, and the sampler asked again.
//
// Reasoning models think first: with `think` free_until_close (the prompt opened <think>) the
// tokens are free until </think>; with may_open the first token may be <think> as well as the
// document's start.
//
// Lazy (a trigger token): the tokens are free until the trigger (tool_choice auto: <tool_call>),
// outside a <think> block; then a document follows, ended by trigger_end (</tool_call>) instead of
// the end tokens, and the tokens are free again, at most max_triggers times (-1: any).
#pragma once

#include <memory>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/sampler.h"
#include "serve/json_schema.h"
#include "serve/xml_calls.h"

namespace tandem {

class Tokenizer;

// The texts of the tokens a document may contain (normal and byte tokens, not control or
// added ones), sorted, with each one's common prefix length with the one before. Built once per
// tokenizer (~0.1 s for 152K tokens).
class VocabIndex {
public:
    explicit VocabIndex(const Tokenizer& tok);
    struct Entry {
        std::string_view bytes;
        int32_t id;
        int32_t lcp;
    };
    const std::vector<Entry>& entries() const { return entries_; }
    // the text of a token that may appear in a document; nullptr for the others
    const std::string_view* text(int32_t id) const {
        return id >= 0 && id < (int32_t)by_id_.size() && by_id_[(size_t)id].data() ? &by_id_[(size_t)id] : nullptr;
    }
    int32_t n_vocab() const { return (int32_t)by_id_.size(); }
    // <think> and </think> (-1: not tokens of this vocabulary)
    int32_t think_open() const { return think_open_; }
    int32_t think_close() const { return think_close_; }

private:
    std::vector<Entry> entries_;
    std::vector<std::string_view> by_id_;
    int32_t think_open_ = -1, think_close_ = -1;
};

enum class ThinkMode { none, free_until_close, may_open };

struct ConstraintSpec {
    std::shared_ptr<const JsonSchema> schema;  // the document's JSON Schema (null: see xml)
    ThinkMode think = ThinkMode::none;
    int32_t trigger = -1, trigger_end = -1;    // lazy when both are tokens
    int64_t max_triggers = -1;
    std::shared_ptr<const XmlCallSchema> xml = nullptr;  // or an XML tool call (xml_calls.h); both null: no constraint
    bool active() const { return schema || xml; }
};

// The recognizer of a constraint's document: a JSON Schema's or an XML tool call's. A lazy
// constraint's document (a tool call) never spells the text of its markers, <tool_call> or
// </tool_call> (in a string, say): the parser pairs the markers it finds in the text.
class DocMatcher {
public:
    explicit DocMatcher(const ConstraintSpec& spec)
        : m_(spec.schema ? std::variant<JsonMatcher, XmlCallMatcher>(JsonMatcher(spec.schema))
                         : std::variant<JsonMatcher, XmlCallMatcher>(XmlCallMatcher(spec.xml))),
          guard_(spec.trigger >= 0 && spec.trigger_end >= 0) {}
    bool feed(std::string_view b) {
        for (char c : b)
            if (!feed_byte((uint8_t)c)) return false;
        return true;
    }
    bool feed_byte(uint8_t c) {
        if (guard_ && !guard_byte(c)) return false;
        return std::visit([&](auto& m) { return m.feed_byte(c); }, m_);
    }
    bool can_end() const { return std::visit([](const auto& m) { return m.can_end(); }, m_); }

private:
    bool guard_byte(uint8_t c);  // false when c completes a marker's text
    std::variant<JsonMatcher, XmlCallMatcher> m_;
    bool guard_;
    int8_t open_ = 0, close_ = 0;  // bytes of <tool_call> / </tool_call> the last bytes spell
};

class TokenConstraint {
public:
    TokenConstraint(std::shared_ptr<const VocabIndex> vocab, const ConstraintSpec& spec, std::vector<int32_t> end_ids);

    // `sampled` if it may come next; otherwise every token that may not is set to -inf in
    // logits and the sampler draws again. The token returned is taken (the state moves past it);
    // -1 when no token may come next.
    int32_t choose(float* logits, int64_t n_vocab, int32_t sampled, Sampler& sampler);

    bool allows(int32_t id) const;  // (on a copy of the state)
    // A whole document has been taken and nothing follows it yet (not lazy, or inside a call)
    bool document_complete() const { return state_ == State::active && matcher_.can_end(); }
    // Takes id if it may come next (its bytes fed once); false, and nothing taken, if not.
    bool take(int32_t id);
    // every token id that may come next, by the vocabulary walk (for tests and choose)
    void allowed_ids(std::vector<uint8_t>& ok) const;

private:
    // free: lazy, outside a document (and outside <think>)
    enum class State { thinking, first, active, free };
    bool is_end(int32_t id) const;
    std::shared_ptr<const VocabIndex> vocab_;
    ConstraintSpec spec_;
    DocMatcher matcher_, trial_;  // the state; a candidate token fed to a copy (buffers kept)
    State state_;
    int32_t think_open_, think_close_;
    std::vector<int32_t> end_ids_;  // (lazy: trigger_end)
    bool lazy_;
    int32_t trigger_;
    int64_t triggers_left_;
    bool content_seen_ = false;  // lazy: text other than whitespace taken (a <think> after it is text, as ThinkSplitter reads it)
    mutable std::vector<DocMatcher> levels_;  // the walk's matcher after each prefix length
    mutable std::vector<uint8_t> ok_;
};

}  // namespace tandem
