#include "chat/render.h"

#include <cmath>

#include "chat/builtins.h"

namespace tandem::chat {
namespace {

constexpr int kMaxCallDepth = 100;  // macro recursion

enum class Flow { Normal, Break, Continue };

// Python floor division / modulo on integers.
int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

class Renderer {
public:
    explicit Renderer(ValueDict globals) { frames_.push_back(std::move(globals)); }

    Result<std::string> run(const Body& body) {
        TANDEM_ASSIGN(Flow f, exec_body(body));
        (void)f;
        return std::move(out_);
    }

private:
    Error err(int line, const std::string& what) const {
        return make_error("chat template line {}: {}", line, what);
    }
    static Error with_line(int line, const Error& e) {
        if (e.message.rfind("chat template line", 0) == 0) return e;
        return make_error("chat template line {}: {}", line, e.message);
    }

    const Value* lookup(const std::string& name) const {
        for (auto f = frames_.rbegin(); f != frames_.rend(); ++f)
            for (const auto& [k, v] : *f)
                if (k == name) return &v;
        return nullptr;
    }
    Value* lookup_mut(const std::string& name) {
        for (auto f = frames_.rbegin(); f != frames_.rend(); ++f)
            for (auto& [k, v] : *f)
                if (k == name) return &v;
        return nullptr;
    }
    void assign(const std::string& name, Value v) {
        for (auto& [k, old] : frames_.back())
            if (k == name) {
                old = std::move(v);
                return;
            }
        frames_.back().emplace_back(name, std::move(v));
    }

    Result<Flow> exec_body(const Body& body) {
        for (const auto& s : body) {
            TANDEM_ASSIGN(Flow f, exec(*s));
            if (f != Flow::Normal) return f;
        }
        return Flow::Normal;
    }

    Result<Flow> exec(const Stmt& s) {
        switch (s.kind) {
            case Stmt::Kind::Text: out_ += s.text; return Flow::Normal;
            case Stmt::Kind::Output: {
                TANDEM_ASSIGN(Value v, eval(*s.expr));
                out_ += v.str();
                return Flow::Normal;
            }
            case Stmt::Kind::If:
                for (const auto& [cond, body] : s.branches) {
                    TANDEM_ASSIGN(Value c, eval(*cond));
                    if (c.truthy()) return exec_body(body);
                }
                return exec_body(s.else_body);
            case Stmt::Kind::For: return exec_for(s);
            case Stmt::Kind::Set: {
                TANDEM_ASSIGN(Value v, eval(*s.expr));
                if (!s.attr.empty()) {
                    Value* ns = lookup_mut(s.targets[0]);
                    if (!ns || !ns->is_namespace())
                        return err(s.line, "cannot assign attribute '" + s.attr + "' of '" + s.targets[0] +
                                               "': not a namespace");
                    for (auto& [k, old] : ns->mutable_dict())
                        if (k == s.attr) {
                            old = std::move(v);
                            return Flow::Normal;
                        }
                    ns->mutable_dict().emplace_back(s.attr, std::move(v));
                    return Flow::Normal;
                }
                if (s.targets.size() == 1) {
                    assign(s.targets[0], std::move(v));
                    return Flow::Normal;
                }
                TANDEM_TRY(unpack(s.targets, v, s.line));
                return Flow::Normal;
            }
            case Stmt::Kind::SetBlock: {
                std::string saved;
                saved.swap(out_);
                TANDEM_ASSIGN(Flow f, exec_body(s.body));
                (void)f;
                saved.swap(out_);
                assign(s.targets[0], Value::string(std::move(saved)));
                return Flow::Normal;
            }
            case Stmt::Kind::Macro: {
                const Stmt* macro = &s;
                assign(s.name, Value::function(s.name, [this, macro](const CallArgs& a) {
                           return call_macro(*macro, a);
                       }));
                return Flow::Normal;
            }
            case Stmt::Kind::Break: return Flow::Break;
            case Stmt::Kind::Continue: return Flow::Continue;
            case Stmt::Kind::Scope: return exec_body(s.body);
        }
        return Flow::Normal;
    }

    Status unpack(const std::vector<std::string>& targets, const Value& v, int line) {
        if (!v.is_list() || v.as_list().size() != targets.size())
            return err(line, "cannot unpack " + std::string(v.type_name()) + " into " +
                                 std::to_string(targets.size()) + " names");
        for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], v.as_list()[i]);
        return ok_status();
    }

    Result<Value> call_macro(const Stmt& m, const CallArgs& a) {
        if (++call_depth_ > kMaxCallDepth) {
            --call_depth_;
            return err(m.line, "macro '" + m.name + "' recursion too deep");
        }
        if (a.args.size() > m.params.size())
            return err(a.line, "macro '" + m.name + "' takes " + std::to_string(m.params.size()) + " arguments");
        std::vector<ValueDict> saved;
        saved.swap(frames_);
        frames_.push_back(saved.front());
        frames_.emplace_back();
        std::string saved_out;
        saved_out.swap(out_);
        auto restore = [&] {
            frames_.swap(saved);
            out_.swap(saved_out);
            --call_depth_;
        };
        for (size_t i = 0; i < m.params.size(); ++i) {
            const auto& [pname, def] = m.params[i];
            Value v;
            if (i < a.args.size()) {
                v = a.args[i];
            } else {
                bool found = false;
                for (const auto& [k, kv] : a.kwargs)
                    if (k == pname) v = kv, found = true;
                if (!found && def) {
                    auto d = eval(*def);
                    if (!d.ok()) {
                        restore();
                        return d.error();
                    }
                    v = std::move(*d);
                } else if (!found) {
                    v = Value::undefined(pname);
                }
            }
            frames_.back().emplace_back(pname, std::move(v));
        }
        auto r = exec_body(m.body);
        std::string result;
        result.swap(out_);
        restore();
        if (!r.ok()) return r.error();
        return Value::string(std::move(result));
    }

    Result<Flow> exec_for(const Stmt& s) {
        TANDEM_ASSIGN(Value seq, eval(*s.expr));
        ValueList items;
        if (seq.is_list()) {
            items = seq.as_list();
        } else if (seq.is_dict()) {
            for (const auto& [k, v] : seq.as_dict()) items.push_back(Value::string(k));
        } else if (seq.is_string()) {
            for (auto& c : utf8_chars(seq.as_string())) items.push_back(Value::string(c));
        } else if (!seq.is_undefined() && !seq.is_none()) {
            return err(s.line, std::string("cannot iterate over ") + seq.type_name());
        } else if (seq.is_none()) {
            return err(s.line, "cannot iterate over none");
        }
        frames_.emplace_back();
        auto pop = [&](auto r) {
            frames_.pop_back();
            return r;
        };
        if (s.filter) {
            ValueList kept;
            for (auto& item : items) {
                frames_.back().clear();
                if (auto st = bind_targets(s, item); !st.ok()) return pop(Result<Flow>(st.error()));
                auto c = eval(*s.filter);
                if (!c.ok()) return pop(Result<Flow>(c.error()));
                if (c->truthy()) kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        const int64_t n = (int64_t)items.size();
        for (int64_t i = 0; i < n; ++i) {
            frames_.back().clear();
            if (auto st = bind_targets(s, items[(size_t)i]); !st.ok()) return pop(Result<Flow>(st.error()));
            ValueDict loop = {
                {"index", Value::integer(i + 1)},
                {"index0", Value::integer(i)},
                {"revindex", Value::integer(n - i)},
                {"revindex0", Value::integer(n - i - 1)},
                {"first", Value::boolean(i == 0)},
                {"last", Value::boolean(i == n - 1)},
                {"length", Value::integer(n)},
                {"depth", Value::integer(1)},
                {"depth0", Value::integer(0)},
                {"previtem", i > 0 ? items[(size_t)i - 1] : Value::undefined("previtem")},
                {"nextitem", i + 1 < n ? items[(size_t)i + 1] : Value::undefined("nextitem")},
                {"cycle", Value::function("cycle", [i](const CallArgs& a) -> Result<Value> {
                     if (a.args.empty()) return make_error("loop.cycle() needs at least one argument");
                     return a.args[(size_t)i % a.args.size()];
                 })},
            };
            frames_.back().emplace_back("loop", Value::dict(std::move(loop)));
            auto f = exec_body(s.body);
            if (!f.ok()) return pop(Result<Flow>(f.error()));
            if (*f == Flow::Break) break;
        }
        frames_.pop_back();
        if (n == 0) return exec_body(s.else_body);
        return Flow::Normal;
    }

    Status bind_targets(const Stmt& s, const Value& item) {
        if (s.targets.size() == 1) {
            frames_.back().emplace_back(s.targets[0], item);
            return ok_status();
        }
        return unpack(s.targets, item, s.line);
    }

    Result<CallArgs> eval_args(const Expr& e, size_t first) {
        CallArgs a;
        a.line = e.line;
        for (size_t i = first; i < e.children.size(); ++i) {
            TANDEM_ASSIGN(Value v, eval(*e.children[i]));
            a.args.push_back(std::move(v));
        }
        for (const auto& [k, ke] : e.kwargs) {
            TANDEM_ASSIGN(Value v, eval(*ke));
            a.kwargs.emplace_back(k, std::move(v));
        }
        return a;
    }

    Result<Value> get_item(const Value& obj, const Value& key, int line) {
        if (obj.is_undefined())
            return err(line, "'" + obj.as_string() + "' is undefined");
        if (obj.is_dict()) {
            if (!key.is_string()) return Value::undefined();
            const Value* v = obj.find(key.as_string());
            return v ? *v : Value::undefined(key.as_string());
        }
        if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
            int64_t i = key.is_bool() ? key.as_bool() : key.as_int();
            if (obj.is_list()) {
                int64_t n = (int64_t)obj.as_list().size();
                if (i < 0) i += n;
                if (i < 0 || i >= n) return Value::undefined();
                return obj.as_list()[(size_t)i];
            }
            auto chars = utf8_chars(obj.as_string());
            int64_t n = (int64_t)chars.size();
            if (i < 0) i += n;
            if (i < 0 || i >= n) return Value::undefined();
            return Value::string(chars[(size_t)i]);
        }
        return Value::undefined();
    }

    Result<Value> slice(const Expr& e) {
        TANDEM_ASSIGN(Value obj, eval(*e.children[0]));
        int64_t parts[3] = {0, 0, 1};
        bool given[3] = {false, false, false};
        for (int k = 0; k < 3; ++k) {
            if (!e.children[k + 1]) continue;
            TANDEM_ASSIGN(Value v, eval(*e.children[k + 1]));
            if (v.is_none()) continue;
            if (!v.is_int()) return err(e.line, "slice indices must be integers");
            parts[k] = v.as_int();
            given[k] = true;
        }
        const int64_t step = parts[2];
        if (step == 0) return err(e.line, "slice step cannot be zero");
        std::vector<std::string> chars;
        int64_t n;
        if (obj.is_list()) {
            n = (int64_t)obj.as_list().size();
        } else if (obj.is_string()) {
            chars = utf8_chars(obj.as_string());
            n = (int64_t)chars.size();
        } else {
            return err(e.line, std::string("cannot slice ") + obj.type_name());
        }
        auto norm = [&](int64_t v, bool is_given, int64_t def, int64_t lo, int64_t hi) {
            if (!is_given) return def;
            if (v < 0) v += n;
            return std::max(lo, std::min(v, hi));
        };
        int64_t start = step > 0 ? norm(parts[0], given[0], 0, 0, n) : norm(parts[0], given[0], n - 1, -1, n - 1);
        int64_t stop = step > 0 ? norm(parts[1], given[1], n, 0, n) : norm(parts[1], given[1], -1, -1, n - 1);
        ValueList items;
        std::string s;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (obj.is_list()) items.push_back(obj.as_list()[(size_t)i]);
            else s += chars[(size_t)i];
        }
        return obj.is_list() ? Value::list(std::move(items)) : Value::string(std::move(s));
    }

    Result<Value> binary(const Expr& e) {
        const std::string& op = e.name;
        TANDEM_ASSIGN(Value l, eval(*e.children[0]));
        if (op == "and") return l.truthy() ? eval(*e.children[1]) : Result<Value>(l);
        if (op == "or") return l.truthy() ? Result<Value>(l) : eval(*e.children[1]);
        TANDEM_ASSIGN(Value r, eval(*e.children[1]));
        if (op == "==") return Value::boolean(values_equal(l, r));
        if (op == "!=") return Value::boolean(!values_equal(l, r));
        if (op == "~") return Value::string(l.str() + r.str());
        if (op == "in" || op == "notin") {
            CallArgs a;
            a.args.push_back(r);
            auto t = apply_test("in", l, a);
            if (!t.ok()) return with_line(e.line, t.error());
            return Value::boolean(*t != (op == "notin"));
        }
        if (op == "<" || op == ">" || op == "<=" || op == ">=") {
            auto lt = op == "<" || op == ">=" ? values_less(l, r) : values_less(r, l);
            if (!lt.ok()) return with_line(e.line, lt.error());
            return Value::boolean((op == "<" || op == ">") ? *lt : !*lt);
        }
        for (const Value* v : {&l, &r})
            if (v->is_undefined())
                return err(e.line, "'" + v->as_string() + "' is undefined (operator '" + op + "')");
        if (op == "+") {
            if (l.is_string() && r.is_string()) return Value::string(l.as_string() + r.as_string());
            if (l.is_list() && r.is_list()) {
                ValueList items = l.as_list();
                items.insert(items.end(), r.as_list().begin(), r.as_list().end());
                return Value::list(std::move(items));
            }
        }
        if (op == "*" && ((l.is_string() || l.is_list()) && r.is_int())) {
            if (r.as_int() > 1000000) return err(e.line, "repetition count too large");
            std::string s;
            ValueList items;
            for (int64_t i = 0; i < r.as_int(); ++i) {
                if (l.is_string()) s += l.as_string();
                else items.insert(items.end(), l.as_list().begin(), l.as_list().end());
            }
            return l.is_string() ? Value::string(std::move(s)) : Value::list(std::move(items));
        }
        auto is_num = [](const Value& v) { return v.is_number() || v.is_bool(); };
        if (!is_num(l) || !is_num(r))
            return err(e.line, std::string("unsupported operand types for ") + op + ": " + l.type_name() + " and " +
                                   r.type_name());
        auto as_i = [](const Value& v) { return v.is_bool() ? (int64_t)v.as_bool() : v.as_int(); };
        auto as_d = [](const Value& v) { return v.is_bool() ? (double)v.as_bool() : v.as_double(); };
        const bool ints = !l.is_float() && !r.is_float();
        if (op == "/") {
            if (as_d(r) == 0) return err(e.line, "division by zero");
            return Value::number(as_d(l) / as_d(r));
        }
        if (op == "//" || op == "%") {
            if (as_d(r) == 0) return err(e.line, "division by zero");
            if (ints) {
                int64_t a = as_i(l), b = as_i(r), q = floor_div(a, b);
                return Value::integer(op == "//" ? q : a - q * b);
            }
            double a = as_d(l), b = as_d(r), q = std::floor(a / b);
            return Value::number(op == "//" ? q : a - q * b);
        }
        if (op == "**") {
            if (ints && as_i(r) >= 0) {
                int64_t result = 1, base = as_i(l);
                for (int64_t i = 0; i < as_i(r); ++i)
                    if (__builtin_mul_overflow(result, base, &result)) return err(e.line, "integer overflow");
                return Value::integer(result);
            }
            return Value::number(std::pow(as_d(l), as_d(r)));
        }
        if (ints) {
            int64_t a = as_i(l), b = as_i(r), out = 0;
            bool overflow = op == "+" ? __builtin_add_overflow(a, b, &out)
                            : op == "-" ? __builtin_sub_overflow(a, b, &out)
                                        : __builtin_mul_overflow(a, b, &out);
            if (overflow) return err(e.line, "integer overflow");
            return Value::integer(out);
        }
        double a = as_d(l), b = as_d(r);
        return Value::number(op == "+" ? a + b : op == "-" ? a - b : a * b);
    }

    Result<Value> eval(const Expr& e) {
        switch (e.kind) {
            case Expr::Kind::Literal: return e.value;
            case Expr::Kind::Name: {
                const Value* v = lookup(e.name);
                return v ? *v : Value::undefined(e.name);
            }
            case Expr::Kind::GetAttr: {
                TANDEM_ASSIGN(Value obj, eval(*e.children[0]));
                if (obj.is_undefined())
                    return err(e.line, "'" + obj.as_string() + "' is undefined (reading '." + e.name + "')");
                const Value* v = obj.find(e.name);
                return v ? *v : Value::undefined(e.name);
            }
            case Expr::Kind::GetItem: {
                TANDEM_ASSIGN(Value obj, eval(*e.children[0]));
                TANDEM_ASSIGN(Value key, eval(*e.children[1]));
                return get_item(obj, key, e.line);
            }
            case Expr::Kind::Slice: return slice(e);
            case Expr::Kind::Call: {
                const Expr& callee = *e.children[0];
                if (callee.kind == Expr::Kind::GetAttr) {
                    TANDEM_ASSIGN(Value obj, eval(*callee.children[0]));
                    if (obj.is_undefined())
                        return err(e.line, "'" + obj.as_string() + "' is undefined (calling '." + callee.name + "()')");
                    const Value* attr = obj.find(callee.name);
                    if (!attr || !attr->is_function()) {
                        TANDEM_ASSIGN(CallArgs a, eval_args(e, 1));
                        bool found = false;
                        auto r = call_method(obj, callee.name, a, &found);
                        if (!found)
                            return err(e.line, std::string("unsupported method '") + obj.type_name() + "." +
                                                   callee.name + "()'");
                        if (!r.ok()) return with_line(e.line, r.error());
                        return r;
                    }
                }
                TANDEM_ASSIGN(Value fn, eval(callee));
                if (!fn.is_function()) {
                    if (fn.is_undefined()) return err(e.line, "unknown function '" + fn.as_string() + "'");
                    return err(e.line, std::string("'") + fn.type_name() + "' object is not callable");
                }
                TANDEM_ASSIGN(CallArgs a, eval_args(e, 1));
                auto r = fn.as_function()(a);
                if (!r.ok()) return with_line(e.line, r.error());
                return r;
            }
            case Expr::Kind::Filter: {
                TANDEM_ASSIGN(Value v, eval(*e.children[0]));
                TANDEM_ASSIGN(CallArgs a, eval_args(e, 1));
                auto r = apply_filter(e.name, v, a);
                if (!r.ok()) return with_line(e.line, r.error());
                return r;
            }
            case Expr::Kind::Test: {
                TANDEM_ASSIGN(Value v, eval(*e.children[0]));
                TANDEM_ASSIGN(CallArgs a, eval_args(e, 1));
                auto r = apply_test(e.name, v, a);
                if (!r.ok()) return with_line(e.line, r.error());
                return Value::boolean(*r != e.negated);
            }
            case Expr::Kind::Unary: {
                TANDEM_ASSIGN(Value v, eval(*e.children[0]));
                if (e.name == "not") return Value::boolean(!v.truthy());
                if (v.is_int()) return Value::integer(e.name == "-" ? -v.as_int() : v.as_int());
                if (v.is_float()) return Value::number(e.name == "-" ? -v.as_double() : v.as_double());
                if (v.is_bool()) return Value::integer(e.name == "-" ? -(int64_t)v.as_bool() : v.as_bool());
                return err(e.line, "bad operand type for unary " + e.name + ": " + v.type_name());
            }
            case Expr::Kind::Binary: return binary(e);
            case Expr::Kind::List:
            case Expr::Kind::Tuple: {
                ValueList items;
                for (const auto& c : e.children) {
                    TANDEM_ASSIGN(Value v, eval(*c));
                    items.push_back(std::move(v));
                }
                return Value::list(std::move(items));
            }
            case Expr::Kind::Dict: {
                ValueDict items;
                for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
                    TANDEM_ASSIGN(Value k, eval(*e.children[i]));
                    TANDEM_ASSIGN(Value v, eval(*e.children[i + 1]));
                    if (!k.is_string()) return err(e.line, "dict keys must be strings");
                    bool replaced = false;
                    for (auto& [ek, ev] : items)
                        if (ek == k.as_string()) ev = v, replaced = true;
                    if (!replaced) items.emplace_back(k.as_string(), std::move(v));
                }
                return Value::dict(std::move(items));
            }
            case Expr::Kind::Cond: {
                TANDEM_ASSIGN(Value c, eval(*e.children[1]));
                if (c.truthy()) return eval(*e.children[0]);
                if (e.children[2]) return eval(*e.children[2]);
                return Value::undefined();
            }
        }
        return Value::undefined();
    }

    // frames_[0] holds the globals; later frames are for loops and macro calls.
    std::vector<ValueDict> frames_;
    std::string out_;
    int call_depth_ = 0;
};

}  // namespace

Result<std::string> render_template(const Body& body, ValueDict globals) {
    return Renderer(std::move(globals)).run(body);
}

}  // namespace tandem::chat
