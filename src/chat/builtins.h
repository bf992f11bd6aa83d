// Built-in filters, tests, methods of str/dict/list and global functions of the Jinja subset,
// with Python (jinja2) semantics, as transformers renders chat templates.
#pragma once

#include <string>

#include "chat/value.h"

namespace tandem::chat {

// `value | name(args)`. Errors name the line and the filter.
Result<Value> apply_filter(const std::string& name, const Value& value, const CallArgs& args);
// `value is name(args)`.
Result<bool> apply_test(const std::string& name, const Value& value, const CallArgs& args);
// `obj.name(args)` for str, dict and list methods; *found is false when there is no such method.
Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& args, bool* found);
// namespace(), raise_exception(), range(), dict(), strftime_now().
ValueDict make_globals();

// Python str.strip family; chars empty means whitespace.
std::string py_strip(const std::string& s, const std::string& chars, bool left, bool right);

}  // namespace tandem::chat
