#include "chat/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tandem::chat {

Value Value::undefined(std::string name) {
    Value v;
    v.s_ = std::move(name);
    return v;
}
Value Value::none() {
    Value v;
    v.kind_ = Kind::None;
    return v;
}
Value Value::boolean(bool b) {
    Value v;
    v.kind_ = Kind::Bool;
    v.b_ = b;
    return v;
}
Value Value::integer(int64_t i) {
    Value v;
    v.kind_ = Kind::Int;
    v.i_ = i;
    return v;
}
Value Value::number(double f) {
    Value v;
    v.kind_ = Kind::Float;
    v.f_ = f;
    return v;
}
Value Value::string(std::string s) {
    Value v;
    v.kind_ = Kind::String;
    v.s_ = std::move(s);
    return v;
}
Value Value::list(ValueList items) {
    Value v;
    v.kind_ = Kind::List;
    v.list_ = std::make_shared<const ValueList>(std::move(items));
    return v;
}
Value Value::dict(ValueDict items) {
    Value v;
    v.kind_ = Kind::Dict;
    v.dict_ = std::make_shared<ValueDict>(std::move(items));
    return v;
}
Value Value::namespace_(ValueDict items) {
    Value v = dict(std::move(items));
    v.namespace_flag_ = true;
    return v;
}
Value Value::function(std::string name, Function f) {
    Value v;
    v.kind_ = Kind::Function;
    v.s_ = std::move(name);
    v.fn_ = std::make_shared<const Function>(std::move(f));
    return v;
}

Value Value::from_json(const Json& j) {
    switch (j.type()) {
        case Json::value_t::null: return none();
        case Json::value_t::boolean: return boolean(j.get<bool>());
        case Json::value_t::number_integer: return integer(j.get<int64_t>());
        case Json::value_t::number_unsigned: {
            uint64_t u = j.get<uint64_t>();
            return u > (uint64_t)INT64_MAX ? number((double)u) : integer((int64_t)u);
        }
        case Json::value_t::number_float: return number(j.get<double>());
        case Json::value_t::string: return string(j.get<std::string>());
        case Json::value_t::array: {
            ValueList items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json(e));
            return list(std::move(items));
        }
        case Json::value_t::object: {
            ValueDict items;
            items.reserve(j.size());
            for (const auto& [k, e] : j.items()) items.emplace_back(k, from_json(e));
            return dict(std::move(items));
        }
        default: return none();  // binary / discarded: not produced by JSON text
    }
}

bool Value::truthy() const {
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return false;
        case Kind::Bool: return b_;
        case Kind::Int: return i_ != 0;
        case Kind::Float: return f_ != 0.0;
        case Kind::String: return !s_.empty();
        case Kind::List: return !list_->empty();
        case Kind::Dict: return namespace_flag_ || !dict_->empty();
        case Kind::Function: return true;
    }
    return false;
}

const Value* Value::find(const std::string& key) const {
    if (kind_ != Kind::Dict) return nullptr;
    for (const auto& [k, v] : *dict_)
        if (k == key) return &v;
    return nullptr;
}

namespace {

// Python repr of a float: shortest round-trip digits, always with a '.' or an exponent.
std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
    std::string s = fmt::format("{}", d);
    if (s.find_first_of(".e") == std::string::npos) s += ".0";
    return s;
}

std::string python_str_repr(const std::string& s) {
    char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, q);
    for (unsigned char c : s) {
        if (c == (unsigned char)q || c == '\\') {
            out += '\\';
            out += (char)c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += (char)c;
        }
    }
    out += q;
    return out;
}

}  // namespace

std::string json_quote(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) out += fmt::format("\\u{:04x}", c);
                else out += (char)c;
        }
    }
    out += '"';
    return out;
}

std::string Value::str() const {
    switch (kind_) {
        case Kind::Undefined: return "";
        case Kind::String: return s_;
        default: return repr();
    }
}

std::string Value::repr() const {
    switch (kind_) {
        case Kind::Undefined: return "";
        case Kind::None: return "None";
        case Kind::Bool: return b_ ? "True" : "False";
        case Kind::Int: return std::to_string(i_);
        case Kind::Float: return float_repr(f_);
        case Kind::String: return python_str_repr(s_);
        case Kind::List: {
            std::string out = "[";
            for (size_t i = 0; i < list_->size(); ++i) {
                if (i) out += ", ";
                out += (*list_)[i].repr();
            }
            return out + "]";
        }
        case Kind::Dict: {
            std::string out = namespace_flag_ ? "<Namespace {" : "{";
            bool first = true;
            for (const auto& [k, v] : *dict_) {
                if (!first) out += ", ";
                first = false;
                out += python_str_repr(k) + ": " + v.repr();
            }
            return out + (namespace_flag_ ? "}>" : "}");
        }
        case Kind::Function: return "<function " + s_ + ">";
    }
    return "";
}

Result<std::string> Value::to_json_string(int indent, bool sort_keys, int depth) const {
    if (depth > 512) return make_error("tojson: value nested too deeply");
    const std::string item_sep = indent >= 0 ? "," : ", ";
    const std::string pad = indent >= 0 ? "\n" + std::string((size_t)indent * (depth + 1), ' ') : "";
    const std::string end_pad = indent >= 0 ? "\n" + std::string((size_t)indent * depth, ' ') : "";
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return std::string("null");
        case Kind::Bool: return std::string(b_ ? "true" : "false");
        case Kind::Int: return std::to_string(i_);
        case Kind::Float:
            if (std::isnan(f_)) return std::string("NaN");
            if (std::isinf(f_)) return std::string(f_ > 0 ? "Infinity" : "-Infinity");
            return float_repr(f_);
        case Kind::String: return json_quote(s_);
        case Kind::List: {
            if (list_->empty()) return std::string("[]");
            std::string out = "[";
            for (size_t i = 0; i < list_->size(); ++i) {
                TANDEM_ASSIGN(std::string e, (*list_)[i].to_json_string(indent, sort_keys, depth + 1));
                out += (i ? item_sep : std::string()) + pad + e;
            }
            return out + end_pad + "]";
        }
        case Kind::Dict: {
            if (dict_->empty()) return std::string("{}");
            std::vector<const std::pair<std::string, Value>*> entries;
            for (const auto& e : *dict_) entries.push_back(&e);
            if (sort_keys)
                std::stable_sort(entries.begin(), entries.end(),
                                 [](auto* a, auto* b) { return a->first < b->first; });
            std::string out = "{";
            bool first = true;
            for (const auto* e : entries) {
                TANDEM_ASSIGN(std::string v, e->second.to_json_string(indent, sort_keys, depth + 1));
                out += (first ? std::string() : item_sep) + pad + json_quote(e->first) + ": " + v;
                first = false;
            }
            return out + end_pad + "}";
        }
        case Kind::Function: return make_error("tojson: cannot serialize function '{}'", s_);
    }
    return std::string();
}

const char* Value::type_name() const {
    switch (kind_) {
        case Kind::Undefined: return "undefined";
        case Kind::None: return "none";
        case Kind::Bool: return "boolean";
        case Kind::Int: return "integer";
        case Kind::Float: return "float";
        case Kind::String: return "string";
        case Kind::List: return "list";
        case Kind::Dict: return namespace_flag_ ? "namespace" : "dict";
        case Kind::Function: return "function";
    }
    return "?";
}

bool values_equal(const Value& a, const Value& b) {
    auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
    if (numeric(a) && numeric(b)) {
        auto num = [](const Value& v) { return v.is_bool() ? (double)v.as_bool() : v.as_double(); };
        if ((a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool()))
            return (a.is_bool() ? (int64_t)a.as_bool() : a.as_int()) ==
                   (b.is_bool() ? (int64_t)b.as_bool() : b.as_int());
        return num(a) == num(b);
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case Value::Kind::Undefined:
        case Value::Kind::None: return true;
        case Value::Kind::String: return a.as_string() == b.as_string();
        case Value::Kind::List: {
            const auto &x = a.as_list(), &y = b.as_list();
            if (x.size() != y.size()) return false;
            for (size_t i = 0; i < x.size(); ++i)
                if (!values_equal(x[i], y[i])) return false;
            return true;
        }
        case Value::Kind::Dict: {
            const auto &x = a.as_dict(), &y = b.as_dict();
            if (x.size() != y.size()) return false;
            for (const auto& [k, v] : x) {
                const Value* o = b.find(k);
                if (!o || !values_equal(v, *o)) return false;
            }
            return true;
        }
        case Value::Kind::Function: return &a.as_function() == &b.as_function();
        default: return false;
    }
}

Result<bool> values_less(const Value& a, const Value& b) {
    auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
    auto num = [](const Value& v) { return v.is_bool() ? (double)v.as_bool() : v.as_double(); };
    if (numeric(a) && numeric(b)) {
        if (a.is_int() && b.is_int()) return a.as_int() < b.as_int();
        return num(a) < num(b);
    }
    if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
    if (a.is_list() && b.is_list()) {
        const auto &x = a.as_list(), &y = b.as_list();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (values_equal(x[i], y[i])) continue;
            return values_less(x[i], y[i]);
        }
        return x.size() < y.size();
    }
    return make_error("'<' not supported between {} and {}", a.type_name(), b.type_name());
}

std::vector<std::string> utf8_chars(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
        n = std::min(n, s.size() - i);
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

}  // namespace tandem::chat
