// Structured output (the API's response_format): a JSON Schema compiled into a byte-level
// recognizer that says, for any prefix of a response, whether it can still become a document the
// schema accepts. The engine checks each sampled token with it and, when the token cannot
// continue the document, masks every token that cannot and samples again (token_constraint.h).
//
// Supported: type (one or a list), properties / required / additionalProperties, items /
// minItems / maxItems, enum, const, anyOf / oneOf (as anyOf), allOf of one schema, $ref to
// "#", "#/$defs/..." or "#/definitions/...", minLength / maxLength of strings; {} and true for
// any value. Annotations (title, description, default, examples, $schema, ...) are ignored, and so
// are pattern, format and the numeric bounds (not enforced; the document still has the type).
// An object with properties takes no other keys unless additionalProperties says so (OpenAI's
// strict mode requires additionalProperties: false anyway); one without properties takes any key.
// Whitespace between tokens is allowed in runs of at most kMaxWs bytes, numbers are at most
// kMaxNumber bytes long (integers at most 15 digits, exponents 2: every JSON parser reads them
// exactly, none overflows), nesting at most kMaxDepth levels; a schema's text at most
// kMaxSchemaBytes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tandem {

class JsonSchema {
public:
    static constexpr int kMaxWs = 48, kMaxNumber = 32, kMaxDepth = 32, kMaxProps = 64, kMaxLiterals = 64;
    static constexpr int kMaxReadings = 64;  // ways to read a prefix that the matcher follows at once
    static constexpr size_t kMaxSchemaBytes = 256 << 10;  // a schema's JSON text

    // A schema (an object or a boolean); errors name the path of the offending keyword.
    static Result<std::shared_ptr<const JsonSchema>> compile(const nlohmann::ordered_json& schema);
    // response_format {"type": "json_object"}: any JSON object.
    static std::shared_ptr<const JsonSchema> any_object();
    // Tool calls. `fns` are the tools' (name, parameters schema; null: no arguments); each
    // parameters schema resolves its own $refs. The shapes:
    // - arguments (tool_choice naming one function, the only one in fns): its arguments object;
    // - calls (tool_choice "required"): a non-empty array of {"name": NAME, "arguments": {...}}
    //   calls of any of them (at most max_calls; -1: any number);
    // - call (tool_choice "auto": what follows a <tool_call> marker, token_constraint.h): one
    //   {"name": NAME, "arguments": {...}} object, whitespace allowed after it.
    enum class ToolShape { arguments, calls, call };
    static Result<std::shared_ptr<const JsonSchema>> tool_calls(const std::vector<std::pair<std::string, nlohmann::ordered_json>>& fns,
                                                                ToolShape shape, int64_t max_calls = -1);

    enum class Kind : uint8_t { any, object, array, string, number, integer, literal, any_of };
    struct Node {
        Kind kind = Kind::any;
        // object: keys as they appear between the quotes (JSON-escaped), their schemas, required
        std::vector<std::string> keys;
        std::vector<int32_t> key_nodes;
        uint64_t required = 0;
        int32_t additional = -1;  // schema of other keys; -1: none allowed
        // array
        int32_t items = 0;
        int64_t min_items = 0, max_items = -1;
        // string: length in code points
        int64_t min_len = 0, max_len = -1;
        // literal: the accepted texts (enum / const / true / false / null), as JSON
        std::vector<std::string> literals;
        // any_of
        std::vector<int32_t> alts;
    };
    // vLLM's guided_choice: exactly one of these texts (as they are, not JSON), nothing before it.
    static Result<std::shared_ptr<const JsonSchema>> choice(const std::vector<std::string>& texts);

    const std::vector<Node>& nodes() const { return nodes_; }
    int32_t root() const { return root_; }
    bool leading_ws() const { return leading_ws_; }    // whitespace before the document
    bool trailing_ws() const { return trailing_ws_; }  // and after it (at most kMaxWs bytes)

private:
    std::vector<Node> nodes_;  // nodes_[0]: any value
    int32_t root_ = 0;
    bool leading_ws_ = true, trailing_ws_ = false;
    friend class JsonSchemaCompiler;
};

// The recognizer's state: every way the bytes so far can be read (usually one).
class JsonMatcher {
public:
    explicit JsonMatcher(std::shared_ptr<const JsonSchema> schema);

    // Takes bytes; false (and the state is then undefined: feed a copy) when no document
    // accepted by the schema starts with what was fed.
    bool feed(std::string_view bytes);
    bool feed_byte(uint8_t c);
    // The bytes so far are a whole document.
    bool can_end() const;
    // the ways the bytes so far can be read (a measure of the work per byte)
    size_t readings() const { return alive_.size(); }

    struct Frame {
        int32_t node = 0;
        uint8_t kind = 0;    // FrameKind (json_schema.cpp)
        uint8_t phase = 0;
        uint16_t ws = 0;     // whitespace run, or a number's length
        int32_t aux = 0;     // object: the key whose value follows; string: UTF-8 bytes still due
        int32_t pos = 0;     // string: code points; key / literal: bytes; array: items; value: anyOf expansions
        uint64_t mask = 0;   // object: keys seen; key: keys still matching; literal: texts still matching
    };
    struct Stack {
        uint8_t depth = 0;
        Frame f[JsonSchema::kMaxDepth + 2];
    };

private:
    void step(Stack& s, uint8_t c, std::vector<Stack>& out) const;
    void complete(Stack& s, std::vector<Stack>& out) const;  // the top frame's value ended

    std::shared_ptr<const JsonSchema> schema_;
    std::vector<Stack> alive_, next_;
};

}  // namespace tandem
