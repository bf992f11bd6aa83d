#include "serve/json_schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace tandem {

using json = nlohmann::ordered_json;

// ---- compiling a schema ------------------------------------------------------------------

namespace {
// Nodes every schema has (JsonSchema::nodes_[i]).
constexpr int32_t kAny = 0, kAnyObject = 1, kAnyArray = 2, kAnyString = 3, kAnyNumber = 4, kAnyWord = 5;

std::string json_text(const json& v) { return v.dump(); }  // UTF-8 kept as is (not \u-escaped)

std::string key_text(const std::string& key) {  // a key as it appears between the quotes
    const std::string d = json(key).dump();
    return d.substr(1, d.size() - 2);
}
}  // namespace

class JsonSchemaCompiler {
public:
    explicit JsonSchemaCompiler(const json& root) : root_(&root) {
        auto& n = s_.nodes_;
        n.resize(6);
        n[kAny].kind = JsonSchema::Kind::any;
        n[kAnyObject].kind = JsonSchema::Kind::object;
        n[kAnyObject].additional = kAny;
        n[kAnyArray].kind = JsonSchema::Kind::array;
        n[kAnyArray].items = kAny;
        n[kAnyString].kind = JsonSchema::Kind::string;
        n[kAnyNumber].kind = JsonSchema::Kind::number;
        n[kAnyWord].kind = JsonSchema::Kind::literal;
        n[kAnyWord].literals = {"true", "false", "null"};
    }

    Result<JsonSchema> run() {
        TANDEM_TRY(size_ok(*root_, "schema"));
        TANDEM_ASSIGN(s_.root_, node(*root_, "schema", 0));
        return std::move(s_);
    }

    // (each node's text is its memo key: bounded, the texts of a schema nested 64 deep stay small)
    static Status size_ok(const json& root, const std::string& path) {
        if (root.dump().size() > JsonSchema::kMaxSchemaBytes)
            return make_error("{}: larger than {} KiB", path, JsonSchema::kMaxSchemaBytes >> 10);
        return {};
    }

    // A schema that is a document of its own ($refs resolve in it) inside this one.
    Result<int32_t> sub_schema(const json& root, const std::string& path) {
        TANDEM_TRY(size_ok(root, path));
        const json* outer = root_;
        std::map<std::string, int32_t> refs, memo;
        root_ = &root;
        refs.swap(refs_);
        memo.swap(memo_);
        auto n = node(root, path, 0);
        root_ = outer;
        refs.swap(refs_);
        memo.swap(memo_);
        return n;
    }

    Result<JsonSchema> tool_calls(const std::vector<std::pair<std::string, json>>& fns, JsonSchema::ToolShape shape,
                                  int64_t max_calls) {
        if (fns.empty()) return make_error("no tools");
        if (fns.size() > (size_t)JsonSchema::kMaxLiterals) return make_error("at most {} tools are supported", JsonSchema::kMaxLiterals);
        const json no_args = {{"type", "object"}, {"additionalProperties", false}};
        JsonSchema::Node calls;
        calls.kind = JsonSchema::Kind::any_of;
        for (const auto& [name, params] : fns) {
            TANDEM_ASSIGN(int32_t args, sub_schema(params.is_null() ? no_args : params, "tools[" + name + "].function.parameters"));
            if (args == kAny) args = kAnyObject;  // (parameters {} or true: arguments are still an object)
            if (shape == JsonSchema::ToolShape::arguments) {
                s_.root_ = args;
                return std::move(s_);
            }
            JsonSchema::Node name_node;
            name_node.kind = JsonSchema::Kind::literal;
            name_node.literals = {json(name).dump()};
            JsonSchema::Node call;
            call.kind = JsonSchema::Kind::object;
            call.keys = {"name", "arguments"};
            call.key_nodes = {add(std::move(name_node)), args};
            call.required = 3;
            calls.alts.push_back(add(std::move(call)));
        }
        if (shape == JsonSchema::ToolShape::call) {
            s_.root_ = add(std::move(calls));
            s_.trailing_ws_ = true;
            return std::move(s_);
        }
        JsonSchema::Node list;
        list.kind = JsonSchema::Kind::array;
        list.items = add(std::move(calls));
        list.min_items = 1;
        list.max_items = max_calls;
        s_.root_ = add(std::move(list));
        return std::move(s_);
    }

private:
    int32_t add(JsonSchema::Node n) {
        s_.nodes_.push_back(std::move(n));
        return (int32_t)s_.nodes_.size() - 1;
    }

    Result<int32_t> ref(const std::string& r, const std::string& path, int depth) {
        if (auto it = refs_.find(r); it != refs_.end()) return it->second;
        const json* target = nullptr;
        if (r == "#") {
            target = root_;
        } else {
            for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
                const std::string p = prefix;
                if (r.rfind(p, 0) != 0) continue;
                const std::string section = p.substr(2, p.size() - 3), name = r.substr(p.size());
                const json& r0 = *root_;
                if (r0.is_object() && r0.contains(section) && r0[section].is_object() && r0[section].contains(name))
                    target = &r0[section][name];
            }
        }
        if (!target) return make_error("{}: $ref '{}' does not name a schema of this document (#, #/$defs/NAME, #/definitions/NAME)", path, r);
        // a placeholder first, so that a recursive schema refers to itself
        const int32_t at = add({});
        refs_[r] = at;
        TANDEM_ASSIGN(int32_t inner, node(*target, r, depth + 1));
        s_.nodes_[(size_t)at].kind = JsonSchema::Kind::any_of;
        s_.nodes_[(size_t)at].alts = {inner};
        return at;
    }

    // The same schema text compiles to the same node, so that alternatives that read alike
    // are one reading in the matcher.
    Result<int32_t> node(const json& sc, const std::string& path, int depth) {
        if (depth > 64) return make_error("{}: the schema nests too deeply", path);
        const std::string text = sc.dump();
        if (auto it = memo_.find(text); it != memo_.end()) return it->second;
        TANDEM_ASSIGN(const int32_t n, compile_node(sc, path, depth));
        memo_.emplace(text, n);
        return n;
    }

    Result<int32_t> compile_node(const json& sc, const std::string& path, int depth) {
        if (sc.is_boolean()) {
            if (!sc.get<bool>()) return make_error("{}: the schema false accepts nothing", path);
            return kAny;
        }
        if (!sc.is_object()) return make_error("{} must be an object or a boolean", path);
        if (auto it = sc.find("$ref"); it != sc.end()) {
            if (!it->is_string()) return make_error("{}.$ref must be a string", path);
            return ref(it->get<std::string>(), path + ".$ref", depth);
        }
        for (const char* k : {"anyOf", "oneOf"})
            if (auto it = sc.find(k); it != sc.end()) {
                if (!it->is_array() || it->empty()) return make_error("{}.{} must be a non-empty array", path, k);
                if (it->size() > (size_t)JsonSchema::kMaxLiterals)
                    return make_error("{}.{}: at most {} alternatives are supported", path, k, JsonSchema::kMaxLiterals);
                JsonSchema::Node n;
                n.kind = JsonSchema::Kind::any_of;
                for (size_t i = 0; i < it->size(); ++i) {
                    TANDEM_ASSIGN(int32_t a, node((*it)[i], fmt::format("{}.{}[{}]", path, k, i), depth + 1));
                    if (std::find(n.alts.begin(), n.alts.end(), a) == n.alts.end()) n.alts.push_back(a);
                }
                return add(std::move(n));
            }
        if (auto it = sc.find("allOf"); it != sc.end()) {
            if (!it->is_array() || it->size() != 1)
                return make_error("{}.allOf: only a list of one schema is supported", path);
            return node((*it)[0], path + ".allOf[0]", depth + 1);
        }
        if (auto it = sc.find("const"); it != sc.end()) {
            JsonSchema::Node n;
            n.kind = JsonSchema::Kind::literal;
            n.literals = {json_text(*it)};
            return add(std::move(n));
        }
        if (auto it = sc.find("enum"); it != sc.end()) {
            if (!it->is_array() || it->empty()) return make_error("{}.enum must be a non-empty array", path);
            if (it->size() > (size_t)JsonSchema::kMaxLiterals)
                return make_error("{}.enum: at most {} values are supported", path, JsonSchema::kMaxLiterals);
            JsonSchema::Node n;
            n.kind = JsonSchema::Kind::literal;
            for (const json& v : *it) n.literals.push_back(json_text(v));
            return add(std::move(n));
        }
        std::vector<std::string> types;
        if (auto it = sc.find("type"); it != sc.end()) {
            if (it->is_string()) types.push_back(it->get<std::string>());
            else if (it->is_array() && !it->empty())
                for (const json& t : *it) {
                    if (!t.is_string()) return make_error("{}.type must be a string or an array of strings", path);
                    types.push_back(t.get<std::string>());
                }
            else return make_error("{}.type must be a string or an array of strings", path);
        } else if (sc.contains("properties") || sc.contains("required") || sc.contains("additionalProperties")) {
            types.push_back("object");
        } else if (sc.contains("items")) {
            types.push_back("array");
        } else {
            return kAny;
        }
        if (types.size() == 1) return typed(sc, types[0], path, depth);
        JsonSchema::Node n;
        n.kind = JsonSchema::Kind::any_of;
        for (const std::string& t : types) {
            TANDEM_ASSIGN(int32_t a, typed(sc, t, path, depth));
            n.alts.push_back(a);
        }
        return add(std::move(n));
    }

    static Result<int64_t> count(const json& sc, const char* key, int64_t dflt, const std::string& path) {
        auto it = sc.find(key);
        if (it == sc.end()) return dflt;
        if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
            return make_error("{}.{} must be a non-negative integer", path, key);
        return it->get<int64_t>();
    }

    Result<int32_t> typed(const json& sc, const std::string& type, const std::string& path, int depth) {
        JsonSchema::Node n;
        if (type == "string") {
            n.kind = JsonSchema::Kind::string;
            TANDEM_ASSIGN(n.min_len, count(sc, "minLength", 0, path));
            TANDEM_ASSIGN(n.max_len, count(sc, "maxLength", -1, path));
            if (n.max_len >= 0 && n.max_len < n.min_len) return make_error("{}: maxLength is below minLength", path);
        } else if (type == "number" || type == "integer") {
            n.kind = type == "number" ? JsonSchema::Kind::number : JsonSchema::Kind::integer;
        } else if (type == "boolean") {
            n.kind = JsonSchema::Kind::literal;
            n.literals = {"true", "false"};
        } else if (type == "null") {
            n.kind = JsonSchema::Kind::literal;
            n.literals = {"null"};
        } else if (type == "array") {
            n.kind = JsonSchema::Kind::array;
            n.items = kAny;
            if (auto it = sc.find("items"); it != sc.end()) {
                TANDEM_ASSIGN(n.items, node(*it, path + ".items", depth + 1));
            }
            TANDEM_ASSIGN(n.min_items, count(sc, "minItems", 0, path));
            TANDEM_ASSIGN(n.max_items, count(sc, "maxItems", -1, path));
            if (n.max_items >= 0 && n.max_items < n.min_items) return make_error("{}: maxItems is below minItems", path);
        } else if (type == "object") {
            n.kind = JsonSchema::Kind::object;
            std::map<std::string, size_t> index;
            if (auto it = sc.find("properties"); it != sc.end()) {
                if (!it->is_object()) return make_error("{}.properties must be an object", path);
                if (it->size() > (size_t)JsonSchema::kMaxProps)
                    return make_error("{}.properties: at most {} properties are supported", path, JsonSchema::kMaxProps);
                for (auto p = it->begin(); p != it->end(); ++p) {
                    TANDEM_ASSIGN(int32_t v, node(p.value(), path + ".properties." + p.key(), depth + 1));
                    index[p.key()] = n.keys.size();
                    n.keys.push_back(key_text(p.key()));
                    n.key_nodes.push_back(v);
                }
            }
            if (auto it = sc.find("required"); it != sc.end()) {
                if (!it->is_array()) return make_error("{}.required must be an array of property names", path);
                for (const json& r : *it) {
                    if (!r.is_string() || !index.count(r.get<std::string>()))
                        return make_error("{}.required: '{}' is not one of the properties", path, r.is_string() ? r.get<std::string>() : r.dump());
                    n.required |= 1ull << index[r.get<std::string>()];
                }
            }
            n.additional = n.keys.empty() ? kAny : -1;
            if (auto it = sc.find("additionalProperties"); it != sc.end()) {
                if (it->is_boolean()) {
                    n.additional = it->get<bool>() ? kAny : -1;
                } else {
                    TANDEM_ASSIGN(n.additional, node(*it, path + ".additionalProperties", depth + 1));
                }
            }
        } else {
            return make_error("{}.type: unknown type '{}' (string, number, integer, boolean, null, array, object)", path, type);
        }
        // the plain ones are the shared nodes (one reading where alternatives agree)
        const auto& a = s_.nodes_;
        if (n.kind == JsonSchema::Kind::array && n.items == kAny && n.min_items == 0 && n.max_items < 0) return kAnyArray;
        if (n.kind == JsonSchema::Kind::string && n.min_len == 0 && n.max_len < 0) return kAnyString;
        if (n.kind == JsonSchema::Kind::number) return kAnyNumber;
        if (n.kind == JsonSchema::Kind::object && n.keys.empty() && n.additional == a[kAnyObject].additional) return kAnyObject;
        return add(std::move(n));
    }

    const json* root_;
    JsonSchema s_;
    std::map<std::string, int32_t> refs_;
    std::map<std::string, int32_t> memo_;  // schema text -> node
};

Result<std::shared_ptr<const JsonSchema>> JsonSchema::compile(const json& schema) {
    JsonSchemaCompiler c(schema);
    TANDEM_ASSIGN(JsonSchema s, c.run());
    return std::make_shared<const JsonSchema>(std::move(s));
}

Result<std::shared_ptr<const JsonSchema>> JsonSchema::tool_calls(const std::vector<std::pair<std::string, json>>& fns,
                                                                 ToolShape shape, int64_t max_calls) {
    const json none;
    JsonSchemaCompiler c(none);
    TANDEM_ASSIGN(JsonSchema s, c.tool_calls(fns, shape, max_calls));
    return std::make_shared<const JsonSchema>(std::move(s));
}

Result<std::shared_ptr<const JsonSchema>> JsonSchema::choice(const std::vector<std::string>& texts) {
    if (texts.empty() || texts.size() > (size_t)kMaxLiterals) return make_error("1 to {} choices are supported", kMaxLiterals);
    JsonSchema s;
    s.nodes_.resize(1);
    JsonSchema::Node n;
    n.kind = Kind::literal;
    for (const std::string& t : texts) {
        if (t.empty() || t.size() > 4096) return make_error("a choice must have 1 to 4096 bytes");
        n.literals.push_back(t);
    }
    s.nodes_.push_back(std::move(n));
    s.root_ = 1;
    s.leading_ws_ = false;
    return std::make_shared<const JsonSchema>(std::move(s));
}

std::shared_ptr<const JsonSchema> JsonSchema::any_object() {
    auto s = compile(json{{"type", "object"}});
    return *s;
}

// ---- matching --------------------------------------------------------------------------

namespace {
enum FrameKind : uint8_t { kDoc, kValue, kObject, kArray, kString, kKey, kNumber, kLiteral };

bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
bool is_hex(uint8_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// whitespace in a frame's run counter; false past the limit
bool take_ws(JsonMatcher::Frame& f) { return ++f.ws <= JsonSchema::kMaxWs; }

// The number automaton: 0 start, 1 after '-', 2 a leading 0, 3 integer digits, 4 after '.',
// 5 fraction digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits; -1 rejects.
int number_next(int st, uint8_t c, bool integer) {
    switch (st) {
        case 0: return c == '-' ? 1 : c == '0' ? 2 : is_digit(c) ? 3 : -1;
        case 1: return c == '0' ? 2 : is_digit(c) ? 3 : -1;
        case 2:
        case 3:
            if (st == 3 && is_digit(c)) return 3;
            if (integer) return -1;
            return c == '.' ? 4 : (c == 'e' || c == 'E') ? 6 : -1;
        case 4: return is_digit(c) ? 5 : -1;
        case 5: return is_digit(c) ? 5 : (c == 'e' || c == 'E') ? 6 : -1;
        case 6: return (c == '+' || c == '-') ? 7 : is_digit(c) ? 8 : -1;
        case 7:
        case 8: return is_digit(c) ? 8 : -1;
    }
    return -1;
}
bool number_accepts(int st) { return st == 2 || st == 3 || st == 5 || st == 8; }
bool number_can_grow(int st, bool integer) { return !(integer && st == 2); }

// One byte of a string's text (after the opening quote, before the closing one), so that the
// string is what every JSON parser takes: escapes (\u escapes of surrogates in pairs), well-formed
// UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), no control characters.
// f.phase: 0 text, 1 after a backslash, 2-5 the hex digits of \u (their value in f.ws), 6-7 the
// \ and u of a low surrogate due, 8-11 its hex digits. f.aux: UTF-8 continuation bytes due (low
// byte) and the range of the next one (bits 8-15, 16-23). Returns false to reject; sets `starts`
// when the byte starts a character.
bool string_byte(JsonMatcher::Frame& f, uint8_t c, bool& starts) {
    starts = false;
    if (f.phase == 1) {  // after a backslash
        if (c == 'u') f.phase = 2, f.ws = 0;
        else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') f.phase = 0;
        else return false;
        return true;
    }
    if (f.phase == 6 || f.phase == 7) {
        if (c != (f.phase == 6 ? '\\' : 'u')) return false;
        ++f.phase;
        f.ws = 0;
        return true;
    }
    if (f.phase >= 2) {  // a hex digit of \uXXXX
        if (!is_hex(c)) return false;
        const int d = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        f.ws = (uint16_t)(f.ws << 4 | d);
        if (f.phase != 5 && f.phase != 11) {
            ++f.phase;
            return true;
        }
        const bool high = f.ws >= 0xD800 && f.ws <= 0xDBFF, low = f.ws >= 0xDC00 && f.ws <= 0xDFFF;
        if (f.phase == 11 ? !low : low) return false;
        f.phase = f.phase == 5 && high ? 6 : 0;
        return true;
    }
    if (f.aux > 0) {
        const int lo = f.aux >> 8 & 0xFF, hi = f.aux >> 16 & 0xFF, due = (f.aux & 0xFF) - 1;
        if (c < lo || c > hi) return false;
        f.aux = due ? due | 0x80 << 8 | 0xBF << 16 : 0;
        return true;
    }
    if (c < 0x20) return false;
    starts = true;
    auto lead = [&](int due, int lo, int hi) { f.aux = due | lo << 8 | hi << 16; };
    if (c == '\\') f.phase = 1;
    else if (c < 0x80) return true;
    else if (c >= 0xC2 && c <= 0xDF) lead(1, 0x80, 0xBF);
    else if (c == 0xE0) lead(2, 0xA0, 0xBF);
    else if (c == 0xED) lead(2, 0x80, 0x9F);
    else if (c >= 0xE1 && c <= 0xEF) lead(2, 0x80, 0xBF);
    else if (c == 0xF0) lead(3, 0x90, 0xBF);
    else if (c >= 0xF1 && c <= 0xF3) lead(3, 0x80, 0xBF);
    else if (c == 0xF4) lead(3, 0x80, 0x8F);
    else return false;
    return true;
}
}  // namespace

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonSchema> schema) : schema_(std::move(schema)) {
    Stack s;
    s.depth = 1;
    s.f[0].kind = kDoc;
    alive_.push_back(s);
}

bool JsonMatcher::can_end() const {
    for (const Stack& s : alive_)
        if (s.depth == 1 && s.f[0].phase == 2) return true;
    return false;
}

bool JsonMatcher::feed_byte(uint8_t c) {
    next_.clear();
    for (Stack& s : alive_) step(s, c, next_);
    // the same reading twice (alternatives that met again) counts once, and the readings are
    // bounded, so that no schema makes a byte cost more than kMaxReadings steps
    size_t n = 0;
    for (size_t i = 0; i < next_.size() && n < (size_t)JsonSchema::kMaxReadings; ++i) {
        const Stack& a = next_[i];
        bool seen = false;
        for (size_t j = 0; j < n && !seen; ++j)
            seen = next_[j].depth == a.depth && std::memcmp(next_[j].f, a.f, sizeof(Frame) * a.depth) == 0;
        if (!seen) next_[n++] = a;
    }
    next_.resize(n);
    alive_.swap(next_);
    next_.clear();  // (so that copying a matcher copies only its state)
    return !alive_.empty();
}

bool JsonMatcher::feed(std::string_view bytes) {
    for (char c : bytes)
        if (!feed_byte((uint8_t)c)) return false;
    return true;
}

void JsonMatcher::complete(Stack& s, std::vector<Stack>& out) const {
    --s.depth;
    Frame& p = s.f[s.depth - 1];
    p.ws = 0;
    switch (p.kind) {
        case kDoc: p.phase = 2; break;
        case kObject:
            if (p.phase == 1) {
                p.phase = 2;  // a key: its colon next
            } else {
                const auto& n = schema_->nodes()[(size_t)p.node];
                if (p.aux < (int32_t)n.keys.size()) p.mask |= 1ull << p.aux;
                p.phase = 4;
            }
            break;
        case kArray:
            ++p.pos;
            p.phase = 2;
            break;
        default: return;  // (only containers have children)
    }
    out.push_back(s);
}

void JsonMatcher::step(Stack& s, uint8_t c, std::vector<Stack>& out) const {
    const auto& nodes = schema_->nodes();
    Frame& f = s.f[s.depth - 1];
    auto push = [&](uint8_t kind, int32_t node) -> Frame* {
        if (s.depth >= JsonSchema::kMaxDepth + 2) return nullptr;
        Frame& g = s.f[s.depth++];
        g = Frame{};
        g.kind = kind;
        g.node = node;
        return &g;
    };
    switch (f.kind) {
        case kDoc: {
            if (f.phase == 2) {  // after the document: whitespace where the schema allows it
                if (schema_->trailing_ws() && is_ws(c) && take_ws(f)) out.push_back(s);
                return;
            }
            Frame* v = f.phase == 0 ? push(kValue, schema_->root()) : nullptr;
            if (!v) return;
            if (!schema_->leading_ws()) v->ws = JsonSchema::kMaxWs;  // (its run is full already)
            f.phase = 1;
            step(s, c, out);
            return;
        }
        case kValue: {
            if (is_ws(c)) {
                if (take_ws(f)) out.push_back(s);
                return;
            }
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            switch (n.kind) {
                case JsonSchema::Kind::any_of:
                    if (f.pos >= 16) return;  // (a cycle of references that never reaches a value)
                    for (int32_t a : n.alts) {
                        Stack t = s;
                        t.f[t.depth - 1].node = a;
                        ++t.f[t.depth - 1].pos;
                        step(t, c, out);
                    }
                    return;
                case JsonSchema::Kind::any: {
                    const int32_t to = c == '{' ? kAnyObject : c == '[' ? kAnyArray : c == '"' ? kAnyString
                                       : (c == '-' || is_digit(c)) ? kAnyNumber : (c == 't' || c == 'f' || c == 'n') ? kAnyWord : -1;
                    if (to < 0) return;
                    f.node = to;
                    step(s, c, out);
                    return;
                }
                case JsonSchema::Kind::object:
                    if (c != '{' || s.depth - 1 > JsonSchema::kMaxDepth) return;  // (every frame above the document's is a container)
                    f = Frame{f.node, kObject};
                    out.push_back(s);
                    return;
                case JsonSchema::Kind::array:
                    if (c != '[' || s.depth - 1 > JsonSchema::kMaxDepth) return;
                    f = Frame{f.node, kArray};
                    out.push_back(s);
                    return;
                case JsonSchema::Kind::string:
                    if (c != '"') return;
                    f = Frame{f.node, kString};
                    out.push_back(s);
                    return;
                case JsonSchema::Kind::number:
                case JsonSchema::Kind::integer:
                    f = Frame{f.node, kNumber};
                    step(s, c, out);
                    return;
                case JsonSchema::Kind::literal:
                    f = Frame{f.node, kLiteral};
                    f.mask = n.literals.size() >= 64 ? ~0ull : (1ull << n.literals.size()) - 1;
                    step(s, c, out);
                    return;
            }
            return;
        }
        case kObject: {
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            if (is_ws(c)) {
                if (f.phase != 1 && f.phase != 3 && take_ws(f)) out.push_back(s);
                return;
            }
            const uint64_t all = n.keys.size() >= 64 ? ~0ull : (1ull << n.keys.size()) - 1;
            const bool complete_ok = (f.mask & n.required) == n.required;
            const bool free = n.additional >= 0;
            const uint64_t unseen = all & ~f.mask;
            if (c == '"' && (f.phase == 0 || f.phase == 5)) {
                if (!free && unseen == 0) return;
                f.phase = 1;
                f.ws = 0;
                Frame* k = push(kKey, f.node);
                if (!k) return;
                k->mask = free ? all : unseen;
                out.push_back(s);
            } else if (c == '}' && (f.phase == 0 || f.phase == 4) && complete_ok) {
                complete(s, out);
            } else if (c == ':' && f.phase == 2) {
                f.phase = 3;
                f.ws = 0;
                const int32_t vn = f.aux < (int32_t)n.keys.size() ? n.key_nodes[(size_t)f.aux] : n.additional;
                if (push(kValue, vn)) out.push_back(s);
            } else if (c == ',' && f.phase == 4 && (free || unseen != 0)) {  // (a key must be able to follow)
                f.phase = 5;
                f.ws = 0;
                out.push_back(s);
            }
            return;
        }
        case kArray: {
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            if (is_ws(c) && (f.phase == 0 || f.phase == 2)) {
                if (take_ws(f)) out.push_back(s);
                return;
            }
            if (c == ']' && ((f.phase == 0 && n.min_items == 0) || (f.phase == 2 && f.pos >= n.min_items))) {
                complete(s, out);
                return;
            }
            if (c == ',' && f.phase == 2) {
                if (n.max_items >= 0 && f.pos >= n.max_items) return;
                f.phase = 3;
                f.ws = 0;
                out.push_back(s);
                return;
            }
            if (f.phase == 0 || f.phase == 3) {  // an item starts
                if (f.phase == 0 && n.max_items == 0) return;
                f.phase = 1;
                f.ws = 0;
                if (!push(kValue, n.items)) return;
                step(s, c, out);
            }
            return;
        }
        case kString: {
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            if (c == '"' && f.phase == 0 && f.aux == 0) {
                if (f.pos < n.min_len) return;
                complete(s, out);
                return;
            }
            bool starts;
            if (!string_byte(f, c, starts)) return;
            if (starts && n.max_len >= 0 && f.pos >= n.max_len) return;
            if (starts) ++f.pos;
            out.push_back(s);
            return;
        }
        case kKey: {
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            Frame& obj = s.f[s.depth - 2];
            if (c == '"' && f.phase == 0 && f.aux == 0) {
                int32_t matched = -1;
                for (size_t k = 0; k < n.keys.size(); ++k)
                    if ((f.mask >> k & 1) && (int32_t)n.keys[k].size() == f.pos) matched = (int32_t)k;
                if (matched >= 0) {
                    if (obj.mask >> matched & 1) return;  // a key twice
                    obj.aux = matched;
                } else if (n.additional >= 0) {
                    obj.aux = (int32_t)n.keys.size();
                } else {
                    return;
                }
                complete(s, out);
                return;
            }
            bool starts;
            if (!string_byte(f, c, starts)) return;
            uint64_t m = 0;
            for (size_t k = 0; k < n.keys.size(); ++k)
                if ((f.mask >> k & 1) && (int32_t)n.keys[k].size() > f.pos && (uint8_t)n.keys[k][(size_t)f.pos] == c) m |= 1ull << k;
            f.mask = m;
            ++f.pos;
            if (m == 0 && n.additional < 0) return;
            out.push_back(s);
            return;
        }
        case kNumber: {
            const bool integer = nodes[(size_t)f.node].kind == JsonSchema::Kind::integer;
            const int st = number_next(f.phase, c, integer);
            if (st < 0 || ++f.ws > JsonSchema::kMaxNumber) return;
            // what every parser reads exactly: integers of at most 15 digits, exponents of 2
            if (st == 3 && ++f.pos > 15 && integer) return;
            if (st == 8 && ++f.aux > 2) return;
            f.phase = (uint8_t)st;
            if (number_accepts(st)) {
                Stack done = s;
                complete(done, out);
            }
            if (number_can_grow(st, integer) && f.ws < JsonSchema::kMaxNumber) out.push_back(s);
            return;
        }
        case kLiteral: {
            const JsonSchema::Node& n = nodes[(size_t)f.node];
            uint64_t m = 0;
            bool ends = false, grows = false;
            for (size_t k = 0; k < n.literals.size(); ++k) {
                const std::string& l = n.literals[k];
                if (!(f.mask >> k & 1) || (int32_t)l.size() <= f.pos || (uint8_t)l[(size_t)f.pos] != c) continue;
                m |= 1ull << k;
                if ((int32_t)l.size() == f.pos + 1) ends = true;
                else grows = true;
            }
            f.mask = m;
            ++f.pos;
            if (ends) {
                Stack done = s;
                complete(done, out);
            }
            if (grows) out.push_back(s);
            return;
        }
    }
}

}  // namespace tandem
