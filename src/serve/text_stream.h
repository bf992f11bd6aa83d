// Text-level pieces of a generated stream: stop strings matched across token boundaries, and the
// split of reasoning (<think> ... </think>) from the answer. Both hold back only the few bytes
// that could still be the start of a marker, so streaming stays immediate.
#pragma once

#include <string>
#include <vector>

namespace tandem {

// Feeds text pieces; returns what is safe to emit. When a stop string appears, the text before
// it is returned, stopped() turns true, and nothing after it is ever returned.
class StopMatcher {
public:
    explicit StopMatcher(std::vector<std::string> stops);
    std::string push(const std::string& text);
    std::string flush();  // end of stream: the held-back text (no stop string in it)
    bool stopped() const { return stopped_; }
    const std::string& matched() const { return matched_; }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
    std::string matched_;
};

// Splits a stream into reasoning and content at <think> / </think> markers (which are dropped).
class ThinkSplitter {
public:
    // in_reasoning: the prompt already opened the reasoning block (it ends with "<think>").
    explicit ThinkSplitter(bool in_reasoning = false) : in_reasoning_(in_reasoning) {}
    struct Out {
        std::string reasoning, content;
    };
    Out push(const std::string& text);
    Out flush();

private:
    void emit(Out& out, const std::string& s) const { (in_reasoning_ ? out.reasoning : out.content) += s; }
    bool in_reasoning_;
    bool seen_content_ = false;
    bool after_close_ = false;   // newlines right after </think> are dropped  // a <think> after the answer started is ordinary text
    std::string held_;
};

// Length of the longest suffix of text that is a proper prefix of marker.
size_t partial_suffix(const std::string& text, const std::string& marker);

}  // namespace tandem
