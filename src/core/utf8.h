// UTF-8 validation and encoding, shared by the tokenizer and the chat-template lexer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

namespace utf8 {
// Length of the valid UTF-8 sequence at s[i..n): > 0 complete and valid, 0 valid so far but
// cut off by n, -1 invalid (bad lead or continuation byte, overlong, surrogate, > U+10FFFF).
int sequence_length(const char* s, size_t n, size_t i);
// Index of the first byte that is not part of valid UTF-8, or n when all of it is valid.
size_t first_invalid(std::string_view s);
// Code point of the valid sequence of `len` bytes at s[i] (len from sequence_length).
uint32_t decode_at(std::string_view s, size_t i, int len);
// Appends code point cp as UTF-8.
void append(std::string& out, uint32_t cp);
}  // namespace utf8

}  // namespace tandem
