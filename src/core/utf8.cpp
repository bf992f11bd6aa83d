#include "core/utf8.h"

namespace tandem {

namespace utf8 {

int sequence_length(const char* s, size_t n, size_t i) {
    const auto b = [&](size_t k) { return (uint8_t)s[k]; };
    const uint8_t c = b(i);
    int len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
    } else {
        return -1;  // continuation byte, C0/C1 (always overlong) or F5..FF
    }
    for (int k = 1; k < len; ++k) {
        if (i + k >= n) return 0;  // cut off, valid so far
        if ((b(i + k) & 0xC0) != 0x80) return -1;
        // second byte decides overlong / surrogate / > U+10FFFF
        if (k == 1) {
            const uint8_t c1 = b(i + 1);
            if (c == 0xE0 && c1 < 0xA0) return -1;
            if (c == 0xED && c1 >= 0xA0) return -1;
            if (c == 0xF0 && c1 < 0x90) return -1;
            if (c == 0xF4 && c1 >= 0x90) return -1;
        }
    }
    return len;
}

size_t first_invalid(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const int len = sequence_length(s.data(), s.size(), i);
        if (len <= 0) return i;
        i += (size_t)len;
    }
    return s.size();
}

void append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += (char)cp;
    } else if (cp < 0x800) {
        out += (char)(0xC0 | (cp >> 6));
        out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += (char)(0xE0 | (cp >> 12));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    } else {
        out += (char)(0xF0 | (cp >> 18));
        out += (char)(0x80 | ((cp >> 12) & 0x3F));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    }
}

// Decodes the valid sequence at s[i] (caller checked it).
uint32_t decode_at(std::string_view s, size_t i, int len) {
    const auto b = [&](size_t k) { return (uint32_t)(uint8_t)s[k]; };
    if (len == 1) return b(i);
    uint32_t cp = b(i) & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
    return cp;
}

}  // namespace utf8

}  // namespace tandem
