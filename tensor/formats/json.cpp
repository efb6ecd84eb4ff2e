#include "tensor/formats/json.h"

#include <charconv>
#include <cstdio>
#include <unordered_set>

#include "tensor/tensor.h"  // fail, cat

namespace dl {

Json::Json() = default;
Json::Json(const Json&) = default;
Json::Json(Json&&) noexcept = default;
Json& Json::operator=(const Json&) = default;
Json& Json::operator=(Json&&) noexcept = default;
Json::~Json() = default;

const char* json_kind_name(Json::Kind k) {
    static const char* names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[k];
}

namespace {
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_printable(char c) { return c >= 0x20 && c < 0x7f; }

// Code point -> UTF-8 (RFC 3629): 1 byte below 0x80, 2 below 0x800, 3 below 0x10000, else 4.
void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}
}  // namespace

JsonReader::JsonReader(std::string_view text, std::string where, std::string document)
    : s_(text), where_(std::move(where)), document_(std::move(document)) {}

// ---- errors -------------------------------------------------------------------------------
// The line and column are counted only here, when an error is thrown, so reading pays nothing
// for them.
[[noreturn]] static void json_error(std::string_view s, size_t at, const std::string& where, const std::string& document,
                                    const std::string& expected) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < at; k++) {
        col = s[k] == '\n' ? 1 : col + 1;
        line += s[k] == '\n';
    }
    std::string found;
    if (at >= s.size()) {
        found = "the end of the " + document;
    } else if (!is_printable(s[at])) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "byte 0x%02x", unsigned(static_cast<unsigned char>(s[at])));
        found = buf;
    } else {
        size_t n = 0;  // up to 12 printable bytes
        while (n < 12 && at + n < s.size() && is_printable(s[at + n])) n++;
        found = cat("'", s.substr(at, n), "'");
    }
    fail(where, ": JSON line ", line, " column ", col, ": expected ", expected, ", found ", found);
}

void JsonReader::error(const std::string& expected) const { json_error(s_, pos_, where_, document_, expected); }

// ---- the cursor ---------------------------------------------------------------------------
void JsonReader::skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) pos_++;
}

bool JsonReader::accept(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
        pos_++;
        return true;
    }
    return false;
}

void JsonReader::expect(char c) {
    if (!accept(c)) error(cat("'", c, "'"));
}

void JsonReader::finish() {
    skip_space();
    if (pos_ != s_.size()) error("the end of the " + document_);
}

// ---- numbers ------------------------------------------------------------------------------
// JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. Returns where the number that
// starts at p ends; on a grammar error sets `bad` to what was expected and returns the byte where
// the grammar broke: "1." the byte after '.', "01" the '1'.
static const char* scan_number(const char* p, const char* end, const char*& bad) {
    auto digit = [end](const char* q) { return q < end && is_digit(*q); };
    bad = nullptr;
    if (p < end && *p == '-') {
        p++;
        if (!digit(p)) return bad = "a digit after '-'", p;
    }
    if (!digit(p)) return bad = "a number", p;
    if (*p == '0') {
        p++;
        if (digit(p)) return bad = "no more digits after a leading 0", p;
    } else {
        while (digit(p)) p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (!digit(p)) return bad = "digits after '.'", p;
        while (digit(p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!digit(p)) return bad = "digits in the exponent", p;
        while (digit(p)) p++;
    }
    return p;
}

std::string_view JsonReader::number() {
    skip_space();
    const char *begin = s_.data(), *bad;
    const char* end = scan_number(begin + pos_, begin + s_.size(), bad);
    if (bad) json_error(s_, size_t(end - begin), where_, document_, bad);
    std::string_view lit(begin + pos_, size_t(end - (begin + pos_)));
    pos_ = size_t(end - begin);
    return lit;
}

// The fast path: no Json node per number, each literal goes through from_chars (correctly
// rounded, locale-free) straight into the vector. The loop keeps its place in a local pointer
// rather than in pos_, which the compiler would otherwise store back on every push_back.
std::vector<double> JsonReader::numbers() {
    std::vector<double> out;
    expect('[');
    if (accept(']')) return out;
    const char *begin = s_.data(), *end = begin + s_.size(), *p = begin + pos_;
    auto space = [&] {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    };
    while (true) {
        space();
        const char* bad;
        const char* q = scan_number(p, end, bad);
        if (bad) json_error(s_, size_t(q - begin), where_, document_, bad);
        double v = 0;
        if (std::from_chars(p, q, v).ec != std::errc()) json_error(s_, size_t(p - begin), where_, document_, "a number a double can hold");
        out.push_back(v);
        p = q;
        space();
        if (p == end || *p != ',') break;
        p++;
    }
    pos_ = size_t(p - begin);
    if (!accept(']')) error("',' or ']'");
    return out;
}

// ---- strings ------------------------------------------------------------------------------
unsigned JsonReader::hex4() {
    unsigned u = 0;
    for (int k = 0; k < 4; k++) {
        char h = pos_ < s_.size() ? s_[pos_] : '\0';
        unsigned d;
        if (h >= '0' && h <= '9') d = unsigned(h - '0');
        else if (h >= 'a' && h <= 'f') d = unsigned(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') d = unsigned(h - 'A' + 10);
        else error("4 hex digits after \\u");
        u = u << 4 | d;
        pos_++;
    }
    return u;
}

std::string JsonReader::string() {
    skip_space();
    const size_t n = s_.size();
    if (pos_ >= n || s_[pos_] != '"') error("a string");
    pos_++;
    std::string out;
    while (true) {
        size_t run = pos_;  // bytes that stand for themselves, copied in one go
        while (run < n && s_[run] != '"' && s_[run] != '\\' && static_cast<unsigned char>(s_[run]) >= 0x20) run++;
        out.append(s_.substr(pos_, run - pos_));
        pos_ = run;
        if (pos_ >= n) error("a closing '\"'");
        if (s_[pos_] == '"') {
            pos_++;
            return out;
        }
        if (s_[pos_] != '\\') error("no raw control characters in a string (escape them: \\n, \\t, \\u0001)");
        const size_t esc = pos_;  // the backslash, where escape errors point
        pos_++;
        char e = pos_ < n ? s_[pos_++] : '\0';
        switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                // UTF-16: a code point above 0xFFFF is a high surrogate D800-DBFF then a low one
                // DC00-DFFF, cp = 0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00) (RFC 8259 sec. 7).
                unsigned cp = hex4();
                if (cp >= 0xDC00 && cp < 0xE000)
                    json_error(s_, esc, where_, document_, "a high surrogate \\uD800-\\uDBFF before a low surrogate");
                if (cp >= 0xD800 && cp < 0xDC00) {
                    const size_t lo_at = pos_;
                    if (s_.substr(pos_, 2) != "\\u") error("a low surrogate \\uDC00-\\uDFFF after a high surrogate");
                    pos_ += 2;
                    unsigned lo = hex4();
                    if (lo < 0xDC00 || lo >= 0xE000)
                        json_error(s_, lo_at, where_, document_, "a low surrogate \\uDC00-\\uDFFF after a high surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                append_utf8(out, cp);
                break;
            }
            default: json_error(s_, esc, where_, document_, "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u");
        }
    }
}

// ---- the DOM ------------------------------------------------------------------------------
Json JsonReader::value(int depth) {
    skip_space();
    if (pos_ >= s_.size()) error("a value");
    const char c = s_[pos_];
    Json v;
    // depth containers hold this value; opening one more must keep it to max_depth in all.
    if ((c == '{' || c == '[') && depth >= max_depth) error(cat("at most ", max_depth, " levels of nesting"));
    if (c == '{') {
        v.kind = Json::OBJECT;
        pos_++;
        if (accept('}')) return v;
        // Hashed, not a scan of the members so far: a safetensors header may hold a key per
        // tensor, and 40,000 of them took seconds that way (a 100 MB header, hours).
        std::unordered_set<std::string> keys;
        do {
            skip_space();
            if (pos_ >= s_.size() || s_[pos_] != '"') error("a key string");
            const size_t key_at = pos_;
            std::string key = string();
            if (!keys.insert(key).second)
                json_error(s_, key_at, where_, document_, cat("a key other than \"", key, "\" (keys are unique)"));
            expect(':');
            v.members.emplace_back(std::move(key), value(depth + 1));
        } while (accept(','));
        if (!accept('}')) error("',' or '}'");
    } else if (c == '[') {
        v.kind = Json::ARRAY;
        pos_++;
        if (accept(']')) return v;
        do v.items.push_back(value(depth + 1));
        while (accept(','));
        if (!accept(']')) error("',' or ']'");
    } else if (c == '"') {
        v.kind = Json::STRING;
        v.text = string();
    } else if (c == '-' || is_digit(c)) {
        v.kind = Json::NUMBER;
        v.text = std::string(number());
    } else if (s_.substr(pos_, 4) == "true" || s_.substr(pos_, 4) == "null") {
        v.kind = c == 't' ? Json::BOOL : Json::NUL;
        v.text = std::string(s_.substr(pos_, 4));
        pos_ += 4;
    } else if (s_.substr(pos_, 5) == "false") {
        v.kind = Json::BOOL;
        v.text = "false";
        pos_ += 5;
    } else {
        error("a value");
    }
    return v;
}

}  // namespace dl
