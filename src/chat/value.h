// Values of the Jinja subset used by chat templates: Python-like None/bool/int/float/str/list/
// dict, plus Undefined, namespace objects (the only mutable values) and callables (macros and
// global functions such as raise_exception).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tandem::chat {

// Keeps object keys in insertion order, like Python dicts and JavaScript objects.
using Json = nlohmann::ordered_json;

class Value;
using ValueList = std::vector<Value>;
// Insertion-ordered like a Python dict; dicts in chat templates are small, lookups are linear.
using ValueDict = std::vector<std::pair<std::string, Value>>;

struct CallArgs {
    std::vector<Value> args;
    std::vector<std::pair<std::string, Value>> kwargs;
    int line = 0;
};
using Function = std::function<Result<Value>(const CallArgs&)>;

class Value {
public:
    enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };

    Value() = default;  // Undefined
    static Value undefined(std::string name = {});
    static Value none();
    static Value boolean(bool b);
    static Value integer(int64_t i);
    static Value number(double f);
    static Value string(std::string s);
    static Value list(ValueList items);
    static Value dict(ValueDict items);
    // A dict whose entries `{% set ns.x = ... %}` may change; copies share the entries.
    static Value namespace_(ValueDict items);
    static Value function(std::string name, Function f);
    static Value from_json(const Json& j);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::Undefined; }
    bool is_none() const { return kind_ == Kind::None; }
    bool is_bool() const { return kind_ == Kind::Bool; }
    bool is_int() const { return kind_ == Kind::Int; }
    bool is_float() const { return kind_ == Kind::Float; }
    bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_list() const { return kind_ == Kind::List; }
    bool is_dict() const { return kind_ == Kind::Dict; }
    bool is_namespace() const { return kind_ == Kind::Dict && namespace_flag_; }
    bool is_function() const { return kind_ == Kind::Function; }

    bool as_bool() const { return b_; }
    int64_t as_int() const { return i_; }
    double as_double() const { return kind_ == Kind::Int ? (double)i_ : f_; }
    const std::string& as_string() const { return s_; }  // also the name of an Undefined
    const ValueList& as_list() const { return *list_; }
    const ValueDict& as_dict() const { return *dict_; }
    ValueDict& mutable_dict() { return *dict_; }
    const Function& as_function() const { return *fn_; }

    // Python truthiness (Undefined is false).
    bool truthy() const;
    // Dict lookup; nullptr when absent.
    const Value* find(const std::string& key) const;
    // Python str(): what `{{ x }}`, `|string` and `~` produce.
    std::string str() const;
    // Python repr(), used inside str() of lists and dicts.
    std::string repr() const;
    // json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=sort_keys) with its default
    // separators (", " and ": ", or "," and ": " with an indent).
    Result<std::string> to_json_string(int indent = -1, bool sort_keys = false, int depth = 0) const;
    const char* type_name() const;

private:
    Kind kind_ = Kind::Undefined;
    bool b_ = false;
    bool namespace_flag_ = false;
    int64_t i_ = 0;
    double f_ = 0;
    std::string s_;
    std::shared_ptr<const ValueList> list_;
    std::shared_ptr<ValueDict> dict_;
    std::shared_ptr<const Function> fn_;
};

// Python ==, with 1 == 1.0 and True == 1.
bool values_equal(const Value& a, const Value& b);
// Python <; an error for unorderable types.
Result<bool> values_less(const Value& a, const Value& b);

// UTF-8 helpers: strings index and slice by code point like Python str.
std::vector<std::string> utf8_chars(const std::string& s);
std::string json_quote(const std::string& s);

}  // namespace tandem::chat
