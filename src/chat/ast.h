// Syntax tree of a parsed Jinja template. One generic node type per layer (expressions,
// statements) keeps the parser and evaluator short; the layout of `children` per kind is
// documented next to each kind.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace tandem::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
using Kwargs = std::vector<std::pair<std::string, ExprPtr>>;

struct Expr {
    enum class Kind {
        Literal,  // value
        Name,     // name
        GetAttr,  // children[0].name
        GetItem,  // children[0][children[1]]
        Slice,    // children[0][children[1]:children[2]:children[3]] (null parts are absent)
        Call,     // children[0](children[1..], kwargs)
        Filter,   // children[0] | name(children[1..], kwargs)
        Test,     // children[0] is [not] name(children[1..])
        Unary,    // name in {not, -, +}; children[0]
        Binary,   // name in {or and == != < > <= >= in notin + - * / // % ** ~}
        List,     // [children...]
        Tuple,    // (children...)
        Dict,     // {children[0]: children[1], children[2]: children[3], ...}
        Cond,     // children[0] if children[1] else children[2] (children[2] may be null)
    };
    Kind kind;
    int line = 0;
    Value value;
    std::string name;
    std::vector<ExprPtr> children;
    Kwargs kwargs;
    bool negated = false;  // Test: `is not`
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
    enum class Kind {
        Text,      // text
        Output,    // {{ expr }}
        If,        // branches (cond, body)...; else_body
        For,       // for targets in expr [if filter]: body; else_body
        Set,       // set targets = expr, or set targets[0].attr = expr
        SetBlock,  // set targets[0] %}body{% endset
        Macro,     // macro name(params) body
        Break,
        Continue,
        Scope,     // body rendered inline: {% generation %} blocks
    };
    Kind kind;
    int line = 0;
    std::string text;
    ExprPtr expr;
    std::vector<std::pair<ExprPtr, Body>> branches;
    Body body;
    Body else_body;
    std::vector<std::string> targets;
    std::string attr;  // Set: `ns.attr = ...` when not empty
    ExprPtr filter;
    std::string name;
    Kwargs params;  // Macro parameters; the default expression may be null
};

}  // namespace tandem::chat
