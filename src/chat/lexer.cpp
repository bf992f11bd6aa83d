#include "chat/lexer.h"

#include <cctype>
#include <cstring>

#include "core/utf8.h"

namespace tandem::chat {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Lexer {
public:
    explicit Lexer(std::string src) : src_(std::move(src)) {}

    Result<std::vector<Token>> run() {
        bool line_starting = true;  // the previous tag ended a line (Python's lstrip_blocks rule)
        while (pos_ < src_.size()) {
            size_t open = find_open(pos_);
            std::string text = src_.substr(pos_, open - pos_);
            int text_line = line_;
            count_lines(pos_, open);
            pos_ = open;
            if (open >= src_.size()) {
                push_text(std::move(text), text_line);
                break;
            }
            char kind = src_[open + 1];  // '{', '%' or '#'
            char flag = open + 2 < src_.size() ? src_[open + 2] : 0;
            if (flag == '-') {
                while (!text.empty() && is_space(text.back())) text.pop_back();
            } else if (flag != '+' && kind != '{') {
                size_t l_pos = text.rfind('\n');
                l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
                if (l_pos > 0 || line_starting) {
                    bool all_ws = true;
                    for (size_t i = l_pos; i < text.size(); ++i)
                        if (text[i] != ' ' && text[i] != '\t') all_ws = false;
                    if (all_ws) text.resize(l_pos);
                }
            }
            push_text(std::move(text), text_line);
            pos_ = open + 2 + ((flag == '-' || flag == '+') ? 1 : 0);
            bool strip_after = false;
            bool plus_after = false;
            if (kind == '#') {
                size_t close = src_.find("#}", pos_);
                if (close == std::string::npos) return err("unterminated comment");
                strip_after = close > pos_ && src_[close - 1] == '-';
                plus_after = close > pos_ && src_[close - 1] == '+';
                count_lines(pos_, close + 2);
                pos_ = close + 2;
            } else {
                tokens_.push_back({kind == '{' ? TokenType::VarBegin : TokenType::BlockBegin, "", line_});
                size_t first_tok = tokens_.size();
                TANDEM_TRY(lex_tag(kind == '{' ? '}' : '%', strip_after, plus_after));
                if (kind == '%' && tokens_.size() == first_tok + 2 && tokens_[first_tok].type == TokenType::Name &&
                    tokens_[first_tok].text == "raw") {
                    tokens_.resize(first_tok - 1);
                    TANDEM_TRY(lex_raw(strip_after, plus_after));
                }
            }
            line_starting = false;
            if (strip_after) {
                while (pos_ < src_.size() && is_space(src_[pos_])) {
                    if (src_[pos_] == '\n') line_starting = true, ++line_;
                    else line_starting = false;
                    ++pos_;
                }
            } else if (kind != '{' && !plus_after && pos_ < src_.size() && src_[pos_] == '\n') {
                ++pos_;
                ++line_;
                line_starting = true;
            }
        }
        tokens_.push_back({TokenType::Eof, "", line_});
        return std::move(tokens_);
    }

private:
    Error err(const std::string& what) const { return make_error("chat template line {}: {}", line_, what); }

    size_t find_open(size_t from) const {
        for (size_t i = from; i + 1 < src_.size(); ++i)
            if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
        return src_.size();
    }
    void count_lines(size_t from, size_t to) {
        for (size_t i = from; i < to && i < src_.size(); ++i)
            if (src_[i] == '\n') ++line_;
    }
    void push_text(std::string text, int line) {
        if (!text.empty()) tokens_.push_back({TokenType::Text, std::move(text), line});
    }

    // After `{% raw %}`: everything up to `{% endraw %}` is text.
    Status lex_raw(bool& strip_after, bool& plus_after) {
        if (strip_after)
            while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
        for (size_t i = src_.find("{%", pos_); i != std::string::npos; i = src_.find("{%", i + 2)) {
            size_t j = i + 2;
            bool strip_before = j < src_.size() && src_[j] == '-';
            if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) ++j;
            while (j < src_.size() && is_space(src_[j])) ++j;
            if (src_.compare(j, 6, "endraw") != 0) continue;
            j += 6;
            while (j < src_.size() && is_space(src_[j])) ++j;
            strip_after = plus_after = false;
            if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) {
                strip_after = src_[j] == '-';
                plus_after = src_[j] == '+';
                ++j;
            }
            if (src_.compare(j, 2, "%}") != 0) continue;
            std::string text = src_.substr(pos_, i - pos_);
            if (strip_before)
                while (!text.empty() && is_space(text.back())) text.pop_back();
            int line = line_;
            count_lines(pos_, j + 2);
            push_text(std::move(text), line);
            pos_ = j + 2;
            return ok_status();
        }
        return err("missing {% endraw %}");
    }

    Status lex_tag(char close, bool& strip_after, bool& plus_after) {
        int depth = 0;  // open ( [ { inside the tag: `}}` closes the tag only at depth 0
        while (true) {
            while (pos_ < src_.size() && is_space(src_[pos_])) {
                if (src_[pos_] == '\n') ++line_;
                ++pos_;
            }
            if (pos_ >= src_.size()) return err(close == '}' ? "missing '}}'" : "missing '%}'");
            char c = src_[pos_];
            auto at = [&](const char* s) { return src_.compare(pos_, std::strlen(s), s) == 0; };
            if (depth == 0 && (c == '-' || c == '+') && pos_ + 2 < src_.size() && src_[pos_ + 1] == close &&
                src_[pos_ + 2] == '}') {
                strip_after = c == '-';
                plus_after = c == '+';
                pos_ += 3;
                break;
            }
            if (depth == 0 && c == close && pos_ + 1 < src_.size() && src_[pos_ + 1] == '}') {
                pos_ += 2;
                break;
            }
            if (std::isalpha((unsigned char)c) || c == '_') {
                size_t s = pos_;
                while (pos_ < src_.size() && (std::isalnum((unsigned char)src_[pos_]) || src_[pos_] == '_')) ++pos_;
                tokens_.push_back({TokenType::Name, src_.substr(s, pos_ - s), line_});
            } else if (std::isdigit((unsigned char)c)) {
                TANDEM_TRY(lex_number());
            } else if (c == '\'' || c == '"') {
                TANDEM_TRY(lex_string(c));
            } else {
                static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                             ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|"};
                const char* op = nullptr;
                for (const char* o : kOps)
                    if (at(o)) {
                        op = o;
                        break;
                    }
                if (!op) return err(std::string("unexpected character '") + c + "'");
                if (*op == '(' || *op == '[' || *op == '{') ++depth;
                if ((*op == ')' || *op == ']' || *op == '}') && depth > 0) --depth;
                tokens_.push_back({TokenType::Op, op, line_});
                pos_ += std::strlen(op);
            }
        }
        tokens_.push_back({close == '}' ? TokenType::VarEnd : TokenType::BlockEnd, "", line_});
        return ok_status();
    }

    Status lex_number() {
        size_t s = pos_;
        auto digits = [&] {
            while (pos_ < src_.size() && (std::isdigit((unsigned char)src_[pos_]) || src_[pos_] == '_')) ++pos_;
        };
        digits();
        bool is_float = false;
        if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit((unsigned char)src_[pos_ + 1])) {
            is_float = true;
            ++pos_;
            digits();
        }
        if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
            size_t save = pos_++;
            if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
            if (pos_ < src_.size() && std::isdigit((unsigned char)src_[pos_])) {
                is_float = true;
                digits();
            } else {
                pos_ = save;
            }
        }
        std::string text;
        for (size_t i = s; i < pos_; ++i)
            if (src_[i] != '_') text += src_[i];
        tokens_.push_back({is_float ? TokenType::Float : TokenType::Int, text, line_});
        return ok_status();
    }

    // Python string-literal escapes, as jinja2 decodes them.
    Status lex_string(char quote) {
        int start_line = line_;
        std::string out;
        ++pos_;
        while (true) {
            if (pos_ >= src_.size()) return make_error("chat template line {}: unterminated string", start_line);
            char c = src_[pos_++];
            if (c == quote) break;
            if (c == '\n') ++line_;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= src_.size()) continue;
            char e = src_[pos_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'v': out += '\v'; break;
                case 'a': out += '\a'; break;
                case '\\': out += '\\'; break;
                case '\'': out += '\''; break;
                case '"': out += '"'; break;
                case '\n': ++line_; break;
                case 'x':
                case 'u':
                case 'U': {
                    size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (pos_ + n > src_.size()) return err("truncated \\" + std::string(1, e) + " escape");
                    uint32_t cp = 0;
                    for (size_t i = 0; i < n; ++i) {
                        char h = src_[pos_ + i];
                        if (!std::isxdigit((unsigned char)h)) return err("bad \\" + std::string(1, e) + " escape");
                        cp = cp * 16 + (uint32_t)(std::isdigit((unsigned char)h) ? h - '0' : (std::tolower(h) - 'a' + 10));
                    }
                    if (cp > 0x10FFFF) return err("escape out of Unicode range");
                    pos_ += n;
                    utf8::append(out, cp);
                    break;
                }
                default:
                    if (e >= '0' && e <= '7') {
                        uint32_t cp = (uint32_t)(e - '0');
                        for (int i = 0; i < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++i)
                            cp = cp * 8 + (uint32_t)(src_[pos_++] - '0');
                        utf8::append(out, cp);
                    } else {
                        out += '\\';
                        out += e;
                    }
            }
        }
        tokens_.push_back({TokenType::String, std::move(out), start_line});
        return ok_status();
    }

    std::string src_;
    size_t pos_ = 0;
    int line_ = 1;
    std::vector<Token> tokens_;
};

// jinja2 normalizes newlines to "\n" and drops one trailing newline (keep_trailing_newline=False).
std::string normalize(const std::string& source) {
    std::string s;
    s.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            s += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            s += source[i];
        }
    }
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

}  // namespace

Result<std::vector<Token>> lex_template(const std::string& source) { return Lexer(normalize(source)).run(); }

}  // namespace tandem::chat
