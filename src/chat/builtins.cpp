#include "chat/builtins.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

namespace tandem::chat {
namespace {

// Positional argument i, else keyword `name`, else `def`.
Value arg(const CallArgs& a, size_t i, const char* name, Value def = Value()) {
    if (i < a.args.size()) return a.args[i];
    for (const auto& [k, v] : a.kwargs)
        if (k == name) return v;
    return def;
}

Status want_string(const Value& v, const char* what) {
    if (!v.is_string()) return make_error("{}: expected a string, got {}", what, v.type_name());
    return ok_status();
}

bool is_py_space(const std::string& c) {
    return c.size() == 1 && (c[0] == ' ' || (c[0] >= '\t' && c[0] <= '\r') || (c[0] >= '\x1c' && c[0] <= '\x1f'));
}

std::string ascii_map(const std::string& s, int (*f)(int)) {
    std::string out = s;
    for (char& c : out)
        if ((unsigned char)c < 0x80) c = (char)f((unsigned char)c);
    return out;
}

std::string capitalize(const std::string& s) {
    std::string out = ascii_map(s, [](int c) { return std::tolower(c); });
    if (!out.empty() && (unsigned char)out[0] < 0x80) out[0] = (char)std::toupper((unsigned char)out[0]);
    return out;
}

std::string title(const std::string& s) {
    std::string out = s;
    bool prev_alpha = false;
    for (char& c : out) {
        unsigned char u = (unsigned char)c;
        if (u >= 0x80) {
            prev_alpha = true;
            continue;
        }
        c = (char)(prev_alpha ? std::tolower(u) : std::toupper(u));
        prev_alpha = std::isalpha(u) != 0;
    }
    return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between every character
        auto chars = utf8_chars(s);
        int64_t done = 0;
        for (size_t i = 0; i <= chars.size(); ++i) {
            if (count < 0 || done < count) out += to, ++done;
            if (i < chars.size()) out += chars[i];
        }
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t hit = s.find(from, pos);
        if (hit == std::string::npos) break;
        out.append(s, pos, hit - pos);
        out += to;
        pos = hit + from.size();
        ++done;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

Result<Value> split(const std::string& s, const Value& sep, int64_t maxsplit) {
    ValueList parts;
    if (sep.is_none() || sep.is_undefined()) {
        auto chars = utf8_chars(s);
        size_t i = 0;
        while (true) {
            while (i < chars.size() && is_py_space(chars[i])) ++i;
            if (i >= chars.size()) break;
            std::string word;
            if (maxsplit >= 0 && (int64_t)parts.size() >= maxsplit) {
                for (; i < chars.size(); ++i) word += chars[i];
                size_t end = word.size();
                while (end > 0 && std::isspace((unsigned char)word[end - 1])) --end;
                parts.push_back(Value::string(word.substr(0, end)));
                break;
            }
            while (i < chars.size() && !is_py_space(chars[i])) word += chars[i++];
            parts.push_back(Value::string(word));
        }
        return Value::list(std::move(parts));
    }
    TANDEM_TRY(want_string(sep, "split"));
    const std::string& d = sep.as_string();
    if (d.empty()) return make_error("split: empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || (int64_t)parts.size() < maxsplit) {
        size_t hit = s.find(d, pos);
        if (hit == std::string::npos) break;
        parts.push_back(Value::string(s.substr(pos, hit - pos)));
        pos = hit + d.size();
    }
    parts.push_back(Value::string(s.substr(pos)));
    return Value::list(std::move(parts));
}

Result<ValueList> as_items(const Value& v, const char* what) {
    if (v.is_list()) return v.as_list();
    if (v.is_undefined()) return ValueList{};
    if (v.is_string()) {
        ValueList out;
        for (auto& c : utf8_chars(v.as_string())) out.push_back(Value::string(c));
        return out;
    }
    if (v.is_dict()) {
        ValueList out;
        for (const auto& [k, x] : v.as_dict()) out.push_back(Value::string(k));
        return out;
    }
    return make_error("{}: cannot iterate over {}", what, v.type_name());
}

// Dotted attribute lookup used by map/selectattr/sort/join(attribute=...).
Value get_path(const Value& v, const std::string& path) {
    Value cur = v;
    size_t pos = 0;
    while (pos <= path.size()) {
        size_t dot = path.find('.', pos);
        std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        const Value* next = cur.find(key);
        if (!next) return Value::undefined(key);
        cur = *next;
        if (dot == std::string::npos) break;
        pos = dot + 1;
    }
    return cur;
}

CallArgs rest_args(const CallArgs& a, size_t from) {
    CallArgs r;
    r.line = a.line;
    for (size_t i = from; i < a.args.size(); ++i) r.args.push_back(a.args[i]);
    return r;
}

Result<Value> select_filter(const std::string& name, const Value& v, const CallArgs& a) {
    TANDEM_ASSIGN(ValueList items, as_items(v, name.c_str()));
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "select" || name == "selectattr";
    size_t next = 0;
    std::string attr;
    if (by_attr) {
        Value at = arg(a, next++, "attribute");
        TANDEM_TRY(want_string(at, name.c_str()));
        attr = at.as_string();
    }
    Value test = arg(a, next++, "test");
    ValueList out;
    for (const auto& item : items) {
        Value x = by_attr ? get_path(item, attr) : item;
        bool t;
        if (test.is_undefined()) {
            t = x.truthy();
        } else {
            TANDEM_TRY(want_string(test, name.c_str()));
            TANDEM_ASSIGN(t, apply_test(test.as_string(), x, rest_args(a, next)));
        }
        if (t == keep_if) out.push_back(item);
    }
    return Value::list(std::move(out));
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

}  // namespace

std::string py_strip(const std::string& s, const std::string& chars, bool left, bool right) {
    auto cps = utf8_chars(s);
    auto strip_set = utf8_chars(chars);
    auto drop = [&](const std::string& c) {
        return chars.empty() ? is_py_space(c) : std::find(strip_set.begin(), strip_set.end(), c) != strip_set.end();
    };
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && drop(cps[b])) ++b;
    if (right)
        while (e > b && drop(cps[e - 1])) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) out += cps[i];
    return out;
}

Result<Value> apply_filter(const std::string& name, const Value& v, const CallArgs& a) {
    if (name == "default" || name == "d") {
        bool boolean = arg(a, 1, "boolean", Value::boolean(false)).truthy();
        if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value::string(""));
        return v;
    }
    if (name == "length" || name == "count") {
        if (v.is_string()) return Value::integer((int64_t)utf8_chars(v.as_string()).size());
        if (v.is_list()) return Value::integer((int64_t)v.as_list().size());
        if (v.is_dict()) return Value::integer((int64_t)v.as_dict().size());
        if (v.is_undefined()) return Value::integer(0);
        return make_error("filter 'length': {} has no length", v.type_name());
    }
    if (name == "tojson") {
        Value indent = arg(a, 0, "indent", Value::none());
        Value sort = arg(a, 99, "sort_keys", Value::boolean(false));
        if (!indent.is_none() && !indent.is_int()) return make_error("filter 'tojson': indent must be an integer");
        if (arg(a, 99, "separators", Value::none()).truthy())
            return make_error("filter 'tojson': unsupported argument 'separators'");
        TANDEM_ASSIGN(std::string s, v.to_json_string(indent.is_int() ? (int)indent.as_int() : -1, sort.truthy()));
        return Value::string(std::move(s));
    }
    if (name == "string") return Value::string(v.str());
    if (name == "safe") return v;
    if (name == "escape" || name == "e") return Value::string(html_escape(v.str()));
    if (name == "list") {
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'list'"));
        return Value::list(std::move(items));
    }
    if (name == "items") {
        if (v.is_undefined()) return Value::list({});
        if (!v.is_dict()) return make_error("filter 'items': expected a mapping, got {}", v.type_name());
        ValueList out;
        for (const auto& [k, x] : v.as_dict()) out.push_back(Value::list({Value::string(k), x}));
        return Value::list(std::move(out));
    }
    if (name == "first" || name == "last") {
        TANDEM_ASSIGN(ValueList items, as_items(v, name.c_str()));
        if (items.empty()) return Value::undefined();
        return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
        if (v.is_string()) {
            auto chars = utf8_chars(v.as_string());
            std::string out;
            for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
            return Value::string(out);
        }
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'reverse'"));
        std::reverse(items.begin(), items.end());
        return Value::list(std::move(items));
    }
    if (name == "join") {
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'join'"));
        std::string sep = arg(a, 0, "d", Value::string("")).str();
        Value attr = arg(a, 1, "attribute", Value::none());
        std::string out;
        for (size_t i = 0; i < items.size(); ++i) {
            if (i) out += sep;
            out += (attr.is_string() ? get_path(items[i], attr.as_string()) : items[i]).str();
        }
        return Value::string(std::move(out));
    }
    if (name == "map") {
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'map'"));
        Value attr = arg(a, 99, "attribute", Value::none());
        ValueList out;
        for (const auto& item : items) {
            if (attr.is_string()) {
                Value x = get_path(item, attr.as_string());
                if (x.is_undefined()) x = arg(a, 99, "default", x);
                out.push_back(x);
            } else {
                Value f = arg(a, 0, "filter");
                TANDEM_TRY(want_string(f, "filter 'map'"));
                TANDEM_ASSIGN(Value x, apply_filter(f.as_string(), item, rest_args(a, 1)));
                out.push_back(std::move(x));
            }
        }
        return Value::list(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr")
        return select_filter(name, v, a);
    if (name == "unique") {
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'unique'"));
        ValueList out;
        for (const auto& x : items)
            if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return values_equal(x, y); }))
                out.push_back(x);
        return Value::list(std::move(out));
    }
    if (name == "sort" || name == "min" || name == "max") {
        TANDEM_ASSIGN(ValueList items, as_items(v, name.c_str()));
        bool reverse = name == "sort" && arg(a, 0, "reverse", Value::boolean(false)).truthy();
        Value attr = arg(a, 99, "attribute", Value::none());
        auto key = [&](const Value& x) { return attr.is_string() ? get_path(x, attr.as_string()) : x; };
        Status failed;
        std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
            auto lt = reverse ? values_less(key(y), key(x)) : values_less(key(x), key(y));
            if (!lt.ok()) failed = lt.error();
            return lt.ok() && *lt;
        });
        if (!failed.ok()) return make_error("filter '{}': {}", name, failed.error().message);
        if (name == "sort") return Value::list(std::move(items));
        if (items.empty()) return Value::undefined();
        return name == "min" ? items.front() : items.back();
    }
    if (name == "sum") {
        TANDEM_ASSIGN(ValueList items, as_items(v, "filter 'sum'"));
        int64_t si = 0;
        double sd = 0;
        bool is_float = false;
        for (const auto& x : items) {
            if (!x.is_number()) return make_error("filter 'sum': cannot add {}", x.type_name());
            is_float |= x.is_float();
            sd += x.as_double();
            if (x.is_int()) si += x.as_int();
        }
        return is_float ? Value::number(sd) : Value::integer(si);
    }
    if (name == "trim") {
        Value chars = arg(a, 0, "chars", Value::none());
        return Value::string(py_strip(v.str(), chars.is_string() ? chars.as_string() : "", true, true));
    }
    if (name == "lower") return Value::string(ascii_map(v.str(), [](int c) { return std::tolower(c); }));
    if (name == "upper") return Value::string(ascii_map(v.str(), [](int c) { return std::toupper(c); }));
    if (name == "capitalize") return Value::string(capitalize(v.str()));
    if (name == "title") return Value::string(title(v.str()));
    if (name == "replace") {
        Value from = arg(a, 0, "old"), to = arg(a, 1, "new"), count = arg(a, 2, "count", Value::none());
        TANDEM_TRY(want_string(from, "filter 'replace'"));
        TANDEM_TRY(want_string(to, "filter 'replace'"));
        return Value::string(replace_all(v.str(), from.as_string(), to.as_string(),
                                         count.is_int() ? count.as_int() : -1));
    }
    if (name == "indent") {
        int64_t width = arg(a, 0, "width", Value::integer(4)).as_int();
        bool first = arg(a, 1, "first", Value::boolean(false)).truthy();
        bool blank = arg(a, 2, "blank", Value::boolean(false)).truthy();
        std::string pad((size_t)std::clamp<int64_t>(width, 0, 1000), ' ');
        std::string s = v.str(), out;
        size_t pos = 0;
        for (bool is_first = true; pos <= s.size(); is_first = false) {
            size_t nl = s.find('\n', pos);
            std::string line = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
            if ((!is_first || first) && (blank || !line.empty())) out += pad;
            out += line;
            if (nl == std::string::npos) break;
            out += '\n';
            pos = nl + 1;
        }
        return Value::string(std::move(out));
    }
    if (name == "int") {
        if (v.is_int()) return v;
        if (v.is_float()) return Value::integer((int64_t)v.as_double());
        if (v.is_bool()) return Value::integer(v.as_bool());
        if (v.is_string()) {
            try {
                size_t used = 0;
                long long i = std::stoll(py_strip(v.as_string(), "", true, true), &used, 10);
                return Value::integer(i);
            } catch (...) {
            }
        }
        return arg(a, 0, "default", Value::integer(0));
    }
    if (name == "float") {
        if (v.is_number()) return Value::number(v.as_double());
        if (v.is_string()) {
            try {
                return Value::number(std::stod(v.as_string()));
            } catch (...) {
            }
        }
        return arg(a, 0, "default", Value::number(0.0));
    }
    if (name == "abs") {
        if (v.is_int()) return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
        if (v.is_float()) return Value::number(std::fabs(v.as_double()));
        return make_error("filter 'abs': bad operand {}", v.type_name());
    }
    return make_error("unsupported filter '{}'", name);
}

Result<bool> apply_test(const std::string& name, const Value& v, const CallArgs& a) {
    Value other = arg(a, 0, "value");
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string();
    if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
    if (name == "callable") return v.is_function();
    if (name == "lower") return v.is_string() && ascii_map(v.as_string(), [](int c) { return std::tolower(c); }) == v.as_string();
    if (name == "upper") return v.is_string() && ascii_map(v.as_string(), [](int c) { return std::toupper(c); }) == v.as_string();
    if (name == "even" || name == "odd" || name == "divisibleby") {
        if (!v.is_int()) return make_error("test '{}': expected an integer, got {}", name, v.type_name());
        if (name == "even") return v.as_int() % 2 == 0;
        if (name == "odd") return v.as_int() % 2 != 0;
        if (!other.is_int() || other.as_int() == 0) return make_error("test 'divisibleby': bad divisor");
        return v.as_int() % other.as_int() == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, other);
    if (name == "ne" || name == "!=") return !values_equal(v, other);
    if (name == "sameas") return v.kind() == other.kind() && values_equal(v, other);
    if (name == "lt" || name == "<" || name == "lessthan") return values_less(v, other);
    if (name == "gt" || name == ">" || name == "greaterthan") return values_less(other, v);
    if (name == "le" || name == "<=") {
        TANDEM_ASSIGN(bool lt, values_less(other, v));
        return !lt;
    }
    if (name == "ge" || name == ">=") {
        TANDEM_ASSIGN(bool lt, values_less(v, other));
        return !lt;
    }
    if (name == "in") {
        if (other.is_string()) {
            if (!v.is_string()) return make_error("'in <string>' requires a string, got {}", v.type_name());
            return other.as_string().find(v.as_string()) != std::string::npos;
        }
        if (other.is_list())
            return std::any_of(other.as_list().begin(), other.as_list().end(),
                               [&](const Value& x) { return values_equal(x, v); });
        if (other.is_dict()) return v.is_string() && other.find(v.as_string()) != nullptr;
        if (other.is_undefined()) return false;
        return make_error("'in' not supported for {}", other.type_name());
    }
    return make_error("unsupported test '{}'", name);
}

Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& a, bool* found) {
    *found = true;
    if (obj.is_string()) {
        const std::string& s = obj.as_string();
        if (name == "startswith" || name == "endswith") {
            Value p = arg(a, 0, "prefix");
            ValueList options = p.is_list() ? p.as_list() : ValueList{p};
            for (const auto& o : options) {
                TANDEM_TRY(want_string(o, name.c_str()));
                const std::string& x = o.as_string();
                bool hit = name == "startswith" ? s.compare(0, x.size(), x) == 0
                                                : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
                if (hit) return Value::boolean(true);
            }
            return Value::boolean(false);
        }
        if (name == "strip" || name == "lstrip" || name == "rstrip") {
            Value chars = arg(a, 0, "chars", Value::none());
            if (!chars.is_none()) TANDEM_TRY(want_string(chars, name.c_str()));
            return Value::string(py_strip(s, chars.is_string() ? chars.as_string() : "", name != "rstrip",
                                          name != "lstrip"));
        }
        if (name == "split") {
            Value maxsplit = arg(a, 1, "maxsplit", Value::integer(-1));
            return split(s, arg(a, 0, "sep", Value::none()), maxsplit.is_int() ? maxsplit.as_int() : -1);
        }
        if (name == "replace") {
            Value from = arg(a, 0, "old"), to = arg(a, 1, "new"), count = arg(a, 2, "count", Value::integer(-1));
            TANDEM_TRY(want_string(from, "replace"));
            TANDEM_TRY(want_string(to, "replace"));
            return Value::string(replace_all(s, from.as_string(), to.as_string(), count.is_int() ? count.as_int() : -1));
        }
        if (name == "upper" || name == "lower" || name == "title" || name == "capitalize")
            return apply_filter(name, obj, {});
        if (name == "find" || name == "count") {
            Value sub = arg(a, 0, "sub");
            TANDEM_TRY(want_string(sub, name.c_str()));
            if (name == "count") {
                const std::string& x = sub.as_string();
                if (x.empty()) return Value::integer((int64_t)utf8_chars(s).size() + 1);
                int64_t n = 0;
                for (size_t pos = s.find(x); pos != std::string::npos; pos = s.find(x, pos + x.size())) ++n;
                return Value::integer(n);
            }
            size_t pos = s.find(sub.as_string());
            if (pos == std::string::npos) return Value::integer(-1);
            return Value::integer((int64_t)utf8_chars(s.substr(0, pos)).size());
        }
        if (name == "join") {
            TANDEM_ASSIGN(ValueList items, as_items(arg(a, 0, "iterable"), "join"));
            std::string out;
            for (size_t i = 0; i < items.size(); ++i) {
                TANDEM_TRY(want_string(items[i], "join"));
                out += (i ? s : std::string()) + items[i].as_string();
            }
            return Value::string(std::move(out));
        }
    } else if (obj.is_dict()) {
        if (name == "get") {
            const Value* v = obj.find(arg(a, 0, "key").str());
            if (v && arg(a, 0, "key").is_string()) return *v;
            return arg(a, 1, "default", Value::none());
        }
        if (name == "items") return apply_filter("items", obj, {});
        if (name == "keys") return apply_filter("list", obj, {});
        if (name == "values") {
            ValueList out;
            for (const auto& [k, v] : obj.as_dict()) out.push_back(v);
            return Value::list(std::move(out));
        }
    }
    *found = false;
    return Value();
}

ValueDict make_globals() {
    ValueDict g;
    g.emplace_back("namespace", Value::function("namespace", [](const CallArgs& a) -> Result<Value> {
                       ValueDict items;
                       for (const auto& p : a.args) {
                           if (!p.is_dict()) return make_error("namespace(): positional argument must be a dict");
                           items = p.as_dict();
                       }
                       for (const auto& kv : a.kwargs) items.push_back(kv);
                       return Value::namespace_(std::move(items));
                   }));
    g.emplace_back("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Result<Value> {
                       return make_error("template raised an exception: {}", arg(a, 0, "message").str());
                   }));
    g.emplace_back("range", Value::function("range", [](const CallArgs& a) -> Result<Value> {
                       int64_t p[3] = {0, 0, 1};
                       if (a.args.empty() || a.args.size() > 3) return make_error("range() takes 1 to 3 arguments");
                       for (const auto& x : a.args)
                           if (!x.is_int()) return make_error("range(): arguments must be integers");
                       if (a.args.size() == 1) p[1] = a.args[0].as_int();
                       else
                           for (size_t i = 0; i < a.args.size(); ++i) p[i] = a.args[i].as_int();
                       if (p[2] == 0) return make_error("range(): step must not be zero");
                       ValueList out;
                       for (int64_t i = p[0]; p[2] > 0 ? i < p[1] : i > p[1]; i += p[2]) {
                           if (out.size() >= 1000000) return make_error("range(): too many items");
                           out.push_back(Value::integer(i));
                       }
                       return Value::list(std::move(out));
                   }));
    g.emplace_back("dict", Value::function("dict", [](const CallArgs& a) -> Result<Value> {
                       ValueDict items;
                       for (const auto& kv : a.kwargs) items.push_back(kv);
                       return Value::dict(std::move(items));
                   }));
    g.emplace_back("strftime_now", Value::function("strftime_now", [](const CallArgs& a) -> Result<Value> {
                       Value fmt = arg(a, 0, "format");
                       TANDEM_TRY(want_string(fmt, "strftime_now"));
                       std::time_t t = std::time(nullptr);
                       std::tm tm{};
                       localtime_r(&t, &tm);
                       char buf[256];
                       size_t n = std::strftime(buf, sizeof(buf), fmt.as_string().c_str(), &tm);
                       return Value::string(std::string(buf, n));
                   }));
    return g;
}

}  // namespace tandem::chat
