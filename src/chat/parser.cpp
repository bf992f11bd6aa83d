#include "chat/parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "chat/lexer.h"

namespace tandem::chat {
namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and blocks; deeper input is an error

class Parser {
public:
    explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

    Result<Body> parse() {
        std::string end;
        TANDEM_ASSIGN(Body body, parse_body({}, &end));
        return body;
    }

private:
    const Token& cur() const { return t_[p_]; }
    const Token& next() const { return t_[p_ + 1 < t_.size() ? p_ + 1 : p_]; }
    bool is_op(const char* op) const { return cur().type == TokenType::Op && cur().text == op; }
    bool is_name(const char* n) const { return cur().type == TokenType::Name && cur().text == n; }
    void advance() {
        if (p_ + 1 < t_.size()) ++p_;
    }
    static StmtPtr make_stmt(Stmt::Kind kind, int line) {
        auto s = std::make_unique<Stmt>();
        s->kind = kind;
        s->line = line;
        return s;
    }
    Error err(const std::string& what) const { return make_error("chat template line {}: {}", cur().line, what); }
    std::string describe() const {
        switch (cur().type) {
            case TokenType::Eof: return "end of template";
            case TokenType::VarEnd: return "'}}'";
            case TokenType::BlockEnd: return "'%}'";
            case TokenType::String: return "string";
            case TokenType::Text: return "text";
            default: return "'" + cur().text + "'";
        }
    }
    Status expect_op(const char* op) {
        if (!is_op(op)) return err(std::string("expected '") + op + "', got " + describe());
        advance();
        return ok_status();
    }
    Status expect_block_end() {
        if (cur().type != TokenType::BlockEnd) return err("expected '%}', got " + describe());
        advance();
        return ok_status();
    }
    Result<std::string> expect_name() {
        if (cur().type != TokenType::Name) return err("expected a name, got " + describe());
        std::string n = cur().text;
        advance();
        return n;
    }

    // Parses statements up to `{% <one of ends>`; leaves the parser after that keyword.
    Result<Body> parse_body(std::initializer_list<const char*> ends, std::string* which) {
        if (++depth_ > kMaxDepth) return err("blocks nested too deeply");
        Body body;
        while (true) {
            const Token& tok = cur();
            if (tok.type == TokenType::Eof) {
                if (ends.size() == 0) break;
                return err(std::string("unexpected end of template, expected {% ") + *(ends.end() - 1) + " %}");
            }
            if (tok.type == TokenType::Text) {
                auto s = make_stmt(Stmt::Kind::Text, tok.line);
                s->text = tok.text;
                body.push_back(std::move(s));
                advance();
            } else if (tok.type == TokenType::VarBegin) {
                advance();
                auto s = make_stmt(Stmt::Kind::Output, tok.line);
                TANDEM_ASSIGN(s->expr, parse_tuple_expr(true));
                if (cur().type != TokenType::VarEnd) return err("expected '}}', got " + describe());
                advance();
                body.push_back(std::move(s));
            } else if (tok.type == TokenType::BlockBegin) {
                advance();
                if (cur().type != TokenType::Name) return err("expected a tag name, got " + describe());
                for (const char* e : ends)
                    if (cur().text == e) {
                        *which = e;
                        advance();
                        --depth_;
                        return body;
                    }
                TANDEM_ASSIGN(StmtPtr s, parse_statement());
                if (s) body.push_back(std::move(s));
            } else {
                return err("unexpected " + describe());
            }
        }
        --depth_;
        return body;
    }

    Result<StmtPtr> parse_statement() {
        const std::string tag = cur().text;
        const int line = cur().line;
        advance();
        auto s = make_stmt(Stmt::Kind::Text, line);
        std::string end;
        if (tag == "if") {
            s->kind = Stmt::Kind::If;
            TANDEM_ASSIGN(ExprPtr cond, parse_tuple_expr(true));
            TANDEM_TRY(expect_block_end());
            while (true) {
                TANDEM_ASSIGN(Body b, parse_body({"elif", "else", "endif"}, &end));
                s->branches.emplace_back(std::move(cond), std::move(b));
                if (end == "elif") {
                    TANDEM_ASSIGN(cond, parse_tuple_expr(true));
                    TANDEM_TRY(expect_block_end());
                    continue;
                }
                TANDEM_TRY(expect_block_end());
                if (end == "else") {
                    TANDEM_ASSIGN(s->else_body, parse_body({"endif"}, &end));
                    TANDEM_TRY(expect_block_end());
                }
                break;
            }
        } else if (tag == "for") {
            s->kind = Stmt::Kind::For;
            TANDEM_ASSIGN(s->targets, parse_targets());
            if (!is_name("in")) return err("expected 'in' in for loop, got " + describe());
            advance();
            TANDEM_ASSIGN(s->expr, parse_tuple_expr(false));
            if (is_name("if")) {
                advance();
                TANDEM_ASSIGN(s->filter, parse_expression(true));
            }
            if (is_name("recursive")) return err("unsupported construct: recursive for loops");
            TANDEM_TRY(expect_block_end());
            TANDEM_ASSIGN(s->body, parse_body({"else", "endfor"}, &end));
            TANDEM_TRY(expect_block_end());
            if (end == "else") {
                TANDEM_ASSIGN(s->else_body, parse_body({"endfor"}, &end));
                TANDEM_TRY(expect_block_end());
            }
        } else if (tag == "set") {
            TANDEM_ASSIGN(std::string first, expect_name());
            s->targets.push_back(first);
            if (is_op(".")) {
                advance();
                TANDEM_ASSIGN(s->attr, expect_name());
            } else {
                while (is_op(",")) {
                    advance();
                    TANDEM_ASSIGN(std::string n, expect_name());
                    s->targets.push_back(n);
                }
            }
            if (cur().type == TokenType::BlockEnd && s->attr.empty() && s->targets.size() == 1) {
                advance();
                s->kind = Stmt::Kind::SetBlock;
                TANDEM_ASSIGN(s->body, parse_body({"endset"}, &end));
                TANDEM_TRY(expect_block_end());
                return s;
            }
            s->kind = Stmt::Kind::Set;
            TANDEM_TRY(expect_op("="));
            TANDEM_ASSIGN(s->expr, parse_tuple_expr(true));
            TANDEM_TRY(expect_block_end());
        } else if (tag == "macro") {
            s->kind = Stmt::Kind::Macro;
            TANDEM_ASSIGN(s->name, expect_name());
            TANDEM_TRY(expect_op("("));
            while (!is_op(")")) {
                TANDEM_ASSIGN(std::string pname, expect_name());
                ExprPtr def;
                if (is_op("=")) {
                    advance();
                    TANDEM_ASSIGN(def, parse_expression(true));
                }
                s->params.emplace_back(pname, std::move(def));
                if (!is_op(",")) break;
                advance();
            }
            TANDEM_TRY(expect_op(")"));
            TANDEM_TRY(expect_block_end());
            TANDEM_ASSIGN(s->body, parse_body({"endmacro"}, &end));
            if (cur().type == TokenType::Name) advance();  // {% endmacro name %}
            TANDEM_TRY(expect_block_end());
        } else if (tag == "break" || tag == "continue") {
            s->kind = tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
            TANDEM_TRY(expect_block_end());
        } else if (tag == "generation") {
            s->kind = Stmt::Kind::Scope;
            TANDEM_TRY(expect_block_end());
            TANDEM_ASSIGN(s->body, parse_body({"endgeneration"}, &end));
            TANDEM_TRY(expect_block_end());
        } else {
            p_--;
            return err("unsupported tag '{% " + tag + " %}'");
        }
        return s;
    }

    Result<std::vector<std::string>> parse_targets() {
        std::vector<std::string> names;
        bool paren = is_op("(");
        if (paren) advance();
        while (true) {
            TANDEM_ASSIGN(std::string n, expect_name());
            names.push_back(n);
            if (!is_op(",")) break;
            advance();
        }
        if (paren) TANDEM_TRY(expect_op(")"));
        return names;
    }

    ExprPtr node(Expr::Kind k, int line) {
        auto e = std::make_unique<Expr>();
        e->kind = k;
        e->line = line;
        return e;
    }

    // expression [, expression]* : a tuple when there is a comma.
    Result<ExprPtr> parse_tuple_expr(bool with_condexpr) {
        int line = cur().line;
        TANDEM_ASSIGN(ExprPtr first, parse_expression(with_condexpr));
        if (!is_op(",")) return first;
        auto t = node(Expr::Kind::Tuple, line);
        t->children.push_back(std::move(first));
        while (is_op(",")) {
            advance();
            if (cur().type == TokenType::BlockEnd || cur().type == TokenType::VarEnd || is_op(")")) break;
            TANDEM_ASSIGN(ExprPtr e, parse_expression(with_condexpr));
            t->children.push_back(std::move(e));
        }
        return t;
    }

    Result<ExprPtr> parse_expression(bool with_condexpr) {
        if (++depth_ > kMaxDepth) return err("expression nested too deeply");
        auto r = with_condexpr ? parse_condexpr() : parse_or();
        --depth_;
        return r;
    }

    Result<ExprPtr> parse_condexpr() {
        int line = cur().line;
        TANDEM_ASSIGN(ExprPtr e, parse_or());
        while (is_name("if")) {
            advance();
            auto c = node(Expr::Kind::Cond, line);
            TANDEM_ASSIGN(ExprPtr cond, parse_or());
            c->children.push_back(std::move(e));
            c->children.push_back(std::move(cond));
            if (is_name("else")) {
                advance();
                TANDEM_ASSIGN(ExprPtr other, parse_condexpr());
                c->children.push_back(std::move(other));
            } else {
                c->children.push_back(nullptr);
            }
            e = std::move(c);
        }
        return e;
    }

    ExprPtr binary(std::string op, ExprPtr l, ExprPtr r, int line) {
        auto b = node(Expr::Kind::Binary, line);
        b->name = std::move(op);
        b->children.push_back(std::move(l));
        b->children.push_back(std::move(r));
        return b;
    }

    Result<ExprPtr> parse_or() {
        TANDEM_ASSIGN(ExprPtr l, parse_and());
        while (is_name("or")) {
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_and());
            l = binary("or", std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_and() {
        TANDEM_ASSIGN(ExprPtr l, parse_not());
        while (is_name("and")) {
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_not());
            l = binary("and", std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_not() {
        if (is_name("not")) {
            int line = cur().line;
            advance();
            if (++depth_ > kMaxDepth) return err("expression nested too deeply");
            TANDEM_ASSIGN(ExprPtr e, parse_not());
            --depth_;
            auto u = node(Expr::Kind::Unary, line);
            u->name = "not";
            u->children.push_back(std::move(e));
            return u;
        }
        return parse_compare();
    }
    Result<ExprPtr> parse_compare() {
        TANDEM_ASSIGN(ExprPtr l, parse_math1());
        while (true) {
            int line = cur().line;
            std::string op;
            if (cur().type == TokenType::Op &&
                (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
                 cur().text == "<=" || cur().text == ">=")) {
                op = cur().text;
                advance();
            } else if (is_name("in")) {
                op = "in";
                advance();
            } else if (is_name("not") && next().type == TokenType::Name && next().text == "in") {
                op = "notin";
                advance();
                advance();
            } else {
                break;
            }
            TANDEM_ASSIGN(ExprPtr r, parse_math1());
            l = binary(op, std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_math1() {
        TANDEM_ASSIGN(ExprPtr l, parse_concat());
        while (is_op("+") || is_op("-")) {
            std::string op = cur().text;
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_concat());
            l = binary(op, std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_concat() {
        TANDEM_ASSIGN(ExprPtr l, parse_math2());
        while (is_op("~")) {
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_math2());
            l = binary("~", std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_math2() {
        TANDEM_ASSIGN(ExprPtr l, parse_pow());
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            std::string op = cur().text;
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_pow());
            l = binary(op, std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_pow() {
        TANDEM_ASSIGN(ExprPtr l, parse_unary(true));
        while (is_op("**")) {
            int line = cur().line;
            advance();
            TANDEM_ASSIGN(ExprPtr r, parse_unary(true));
            l = binary("**", std::move(l), std::move(r), line);
        }
        return l;
    }
    Result<ExprPtr> parse_unary(bool with_filter) {
        ExprPtr e;
        if (is_op("-") || is_op("+")) {
            auto u = node(Expr::Kind::Unary, cur().line);
            u->name = cur().text;
            advance();
            if (++depth_ > kMaxDepth) return err("expression nested too deeply");
            TANDEM_ASSIGN(ExprPtr operand, parse_unary(false));
            --depth_;
            u->children.push_back(std::move(operand));
            e = std::move(u);
        } else {
            TANDEM_ASSIGN(e, parse_primary());
        }
        TANDEM_ASSIGN(e, parse_postfix(std::move(e)));
        if (with_filter) return parse_filters(std::move(e));
        return e;
    }

    Status parse_call_args(Expr& call) {
        TANDEM_TRY(expect_op("("));
        while (!is_op(")")) {
            if (cur().type == TokenType::Name && next().type == TokenType::Op && next().text == "=") {
                std::string k = cur().text;
                advance();
                advance();
                TANDEM_ASSIGN(ExprPtr v, parse_expression(true));
                call.kwargs.emplace_back(k, std::move(v));
            } else {
                if (!call.kwargs.empty()) return err("positional argument after keyword argument");
                TANDEM_ASSIGN(ExprPtr v, parse_expression(true));
                call.children.push_back(std::move(v));
            }
            if (!is_op(",")) break;
            advance();
        }
        return expect_op(")");
    }

    Result<ExprPtr> parse_postfix(ExprPtr e) {
        while (true) {
            int line = cur().line;
            if (is_op(".")) {
                advance();
                if (cur().type == TokenType::Int) {  // foo.0 is foo[0]
                    auto g = node(Expr::Kind::GetItem, line);
                    auto idx = node(Expr::Kind::Literal, line);
                    idx->value = Value::integer(std::strtoll(cur().text.c_str(), nullptr, 10));
                    advance();
                    g->children.push_back(std::move(e));
                    g->children.push_back(std::move(idx));
                    e = std::move(g);
                    continue;
                }
                auto g = node(Expr::Kind::GetAttr, line);
                TANDEM_ASSIGN(g->name, expect_name());
                g->children.push_back(std::move(e));
                e = std::move(g);
            } else if (is_op("[")) {
                advance();
                ExprPtr parts[3];
                int n_colons = 0;
                while (true) {
                    if (is_op(":")) {
                        if (++n_colons > 2) return err("too many ':' in slice");
                        advance();
                        continue;
                    }
                    if (is_op("]")) break;
                    if (parts[n_colons]) return err("expected ']' or ':', got " + describe());
                    TANDEM_ASSIGN(parts[n_colons], parse_expression(true));
                }
                advance();
                if (n_colons == 0) {
                    if (!parts[0]) return err("empty subscript '[]'");
                    auto g = node(Expr::Kind::GetItem, line);
                    g->children.push_back(std::move(e));
                    g->children.push_back(std::move(parts[0]));
                    e = std::move(g);
                } else {
                    auto s = node(Expr::Kind::Slice, line);
                    s->children.push_back(std::move(e));
                    for (auto& p : parts) s->children.push_back(std::move(p));
                    e = std::move(s);
                }
            } else if (is_op("(")) {
                auto c = node(Expr::Kind::Call, line);
                c->children.push_back(std::move(e));
                TANDEM_TRY(parse_call_args(*c));
                e = std::move(c);
            } else {
                return e;
            }
        }
    }

    Result<ExprPtr> parse_filters(ExprPtr e) {
        while (true) {
            int line = cur().line;
            if (is_op("|")) {
                advance();
                auto f = node(Expr::Kind::Filter, line);
                TANDEM_ASSIGN(f->name, expect_name());
                f->children.push_back(std::move(e));
                if (is_op("(")) TANDEM_TRY(parse_call_args(*f));
                e = std::move(f);
            } else if (is_name("is")) {
                advance();
                auto t = node(Expr::Kind::Test, line);
                if (is_name("not")) {
                    t->negated = true;
                    advance();
                }
                TANDEM_ASSIGN(t->name, expect_name());
                t->children.push_back(std::move(e));
                if (is_op("(")) {
                    TANDEM_TRY(parse_call_args(*t));
                } else if ((cur().type == TokenType::Name && !is_name("else") && !is_name("or") &&
                            !is_name("and") && !is_name("if") && !is_name("is") && !is_name("in") &&
                            !is_name("not")) ||
                           cur().type == TokenType::String || cur().type == TokenType::Int ||
                           cur().type == TokenType::Float || is_op("[") || is_op("{")) {
                    TANDEM_ASSIGN(ExprPtr arg, parse_primary());
                    TANDEM_ASSIGN(arg, parse_postfix(std::move(arg)));
                    t->children.push_back(std::move(arg));
                }
                e = std::move(t);
            } else {
                return e;
            }
        }
    }

    Result<ExprPtr> parse_primary() {
        const Token& tok = cur();
        int line = tok.line;
        auto lit = [&](Value v) {
            auto e = node(Expr::Kind::Literal, line);
            e->value = std::move(v);
            return e;
        };
        switch (tok.type) {
            case TokenType::Name: {
                std::string n = tok.text;
                advance();
                if (n == "true" || n == "True") return lit(Value::boolean(true));
                if (n == "false" || n == "False") return lit(Value::boolean(false));
                if (n == "none" || n == "None") return lit(Value::none());
                auto e = node(Expr::Kind::Name, line);
                e->name = n;
                return e;
            }
            case TokenType::String: {
                std::string s;
                while (cur().type == TokenType::String) {
                    s += cur().text;
                    advance();
                }
                return lit(Value::string(std::move(s)));
            }
            case TokenType::Int: {
                int64_t v = 0;
                auto [ptr, ec] = std::from_chars(tok.text.data(), tok.text.data() + tok.text.size(), v);
                if (ec != std::errc()) return err("integer literal out of range: " + tok.text);
                advance();
                return lit(Value::integer(v));
            }
            case TokenType::Float: {
                double v = std::strtod(tok.text.c_str(), nullptr);
                advance();
                return lit(Value::number(v));
            }
            case TokenType::Op: break;
            default: return err("unexpected " + describe() + " in expression");
        }
        if (is_op("(")) {
            advance();
            if (is_op(")")) {
                advance();
                return node(Expr::Kind::Tuple, line);
            }
            TANDEM_ASSIGN(ExprPtr e, parse_tuple_expr(true));
            TANDEM_TRY(expect_op(")"));
            return e;
        }
        if (is_op("[")) {
            advance();
            auto l = node(Expr::Kind::List, line);
            while (!is_op("]")) {
                TANDEM_ASSIGN(ExprPtr e, parse_expression(true));
                l->children.push_back(std::move(e));
                if (!is_op(",")) break;
                advance();
            }
            TANDEM_TRY(expect_op("]"));
            return l;
        }
        if (is_op("{")) {
            advance();
            auto d = node(Expr::Kind::Dict, line);
            while (!is_op("}")) {
                TANDEM_ASSIGN(ExprPtr k, parse_expression(true));
                TANDEM_TRY(expect_op(":"));
                TANDEM_ASSIGN(ExprPtr v, parse_expression(true));
                d->children.push_back(std::move(k));
                d->children.push_back(std::move(v));
                if (!is_op(",")) break;
                advance();
            }
            TANDEM_TRY(expect_op("}"));
            return d;
        }
        return err("unexpected " + describe() + " in expression");
    }

    std::vector<Token> t_;
    size_t p_ = 0;
    int depth_ = 0;
};

}  // namespace

Result<Body> parse_template(const std::string& source) {
    TANDEM_ASSIGN(std::vector<Token> tokens, lex_template(source));
    return Parser(std::move(tokens)).parse();
}

}  // namespace tandem::chat
