// .npy writer and reader. Layout (numpy/lib/format.py, NEP 1):
//   "\x93NUMPY" | major | minor | header length (uint16 LE for 1.0, uint32 LE for 2.0/3.0)
//   | header: a Python dict literal, space-padded, ending '\n' | data, C order.
// The writer aligns the data to 64 bytes, as numpy does; the reader accepts any padding.
#include "tensor/formats/npy.h"

#include <bit>
#include <cctype>
#include <cstring>

#include "tensor/formats/io.h"

namespace dl {

static_assert(std::endian::native == std::endian::little, "npy: '<f4' data are copied as is");

std::string encode_npy(const Tensor& t) {
    std::string shape = "(";
    for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
    if (t.ndim() == 1) shape.resize(shape.size() - 1);  // "(5,)": a 1-tuple keeps its comma
    else if (t.ndim() > 1) shape.resize(shape.size() - 2);
    shape += ")";
    std::string dict = cat("{'descr': '", t.dtype() == DType::F32 ? "<f4" : "<f8",
                           "', 'fortran_order': False, 'shape': ", shape, ", }");
    // 10 bytes of preamble, then the dict, spaces, '\n': the total is a multiple of 64.
    size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
    if (total - 10 > 65535) fail("write_npy: header of ", total, " bytes does not fit version 1.0");
    std::string header = dict + std::string(total - 10 - dict.size() - 1, ' ') + "\n";

    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(char(header.size() & 0xFF));
    out.push_back(char(header.size() >> 8));
    out += header;
    out.append(static_cast<const char*>(t.raw()), t.nbytes());
    return out;
}

void write_npy(const std::string& path, const Tensor& t) {
    if (!t.defined()) fail("write_npy: ", path, ": tensor is undefined");
    write_file_atomic(path, encode_npy(t));
}

// ---- reader -------------------------------------------------------------------------------
namespace {
// A cursor over the header dict: just enough Python literal syntax for what numpy writes.
struct HeaderParser {
    const std::string& s;
    const std::string& name;
    size_t i = 0;

    [[noreturn]] void error(const std::string& expected) {
        fail(name, ": npy header: expected ", expected, " at offset ", i, ", found \"",
             excerpt(std::string_view(s).substr(i), 20), "\" in header ", excerpt(s, 200));
    }
    void skip_space() {
        while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) i++;
    }
    bool accept(char c) {
        skip_space();
        if (i < s.size() && s[i] == c) return i++, true;
        return false;
    }
    void expect(char c) {
        if (!accept(c)) error(std::string("'") + c + "'");
    }
    std::string quoted() {
        skip_space();
        if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) error("a quoted string");
        char q = s[i++];
        size_t end = s.find(q, i);
        if (end == std::string::npos) error("a closing quote");
        std::string v = s.substr(i, end - i);
        i = end + 1;
        return v;
    }
    bool boolean() {
        skip_space();
        if (s.compare(i, 4, "True") == 0) return i += 4, true;
        if (s.compare(i, 5, "False") == 0) return i += 5, false;
        error("True or False");
    }
    Shape tuple() {
        Shape shape;
        expect('(');
        while (!accept(')')) {
            skip_space();
            if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) error("a dimension or ')'");
            int64_t d = 0;
            while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
                d = d * 10 + (s[i++] - '0');
                if (d > (int64_t(1) << 40)) error("a dimension below 2^40");
            }
            shape.push_back(d);
            if (!accept(',')) {
                expect(')');
                break;
            }
        }
        return shape;
    }
};
}  // namespace

Tensor decode_npy(const std::string& bytes, const std::string& name) {
    if (bytes.size() < 6 || bytes.compare(0, 6, "\x93NUMPY") != 0)
        fail(name, ": expected the npy magic \"\\x93NUMPY\", found ",
             bytes.size() < 6 ? cat("a file of ", bytes.size(), " bytes") : cat("\"", excerpt(std::string_view(bytes).substr(0, 6)), "\""));
    if (bytes.size() < 10) fail(name, ": expected at least 10 bytes (magic, version, header length), found ", bytes.size());
    int major = uint8_t(bytes[6]), minor = uint8_t(bytes[7]);
    if (major < 1 || major > 3 || minor != 0)
        fail(name, ": expected npy version 1.0, 2.0 or 3.0, found ", major, ".", minor);
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t pre = major == 1 ? 10 : 12;
    if (bytes.size() < pre) fail(name, ": expected at least ", pre, " bytes, found ", bytes.size());
    size_t hlen = major == 1 ? size_t(b[8]) | size_t(b[9]) << 8
                             : size_t(b[8]) | size_t(b[9]) << 8 | size_t(b[10]) << 16 | size_t(b[11]) << 24;
    if (bytes.size() < pre + hlen)
        fail(name, ": expected a header of ", hlen, " bytes, found only ", bytes.size() - pre, " bytes after the preamble");
    std::string header = bytes.substr(pre, hlen);

    HeaderParser p{header, name};
    std::string descr;
    bool fortran = false, have_descr = false, have_order = false, have_shape = false;
    Shape shape;
    p.expect('{');
    while (!p.accept('}')) {
        std::string key = p.quoted();
        p.expect(':');
        if (key == "descr") descr = p.quoted(), have_descr = true;
        else if (key == "fortran_order") fortran = p.boolean(), have_order = true;
        else if (key == "shape") shape = p.tuple(), have_shape = true;
        else p.error("one of the keys 'descr', 'fortran_order', 'shape' (found '" + excerpt(key) + "')");
        if (!p.accept(',')) {
            p.expect('}');
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape)
        fail(name, ": npy header: expected keys 'descr', 'fortran_order' and 'shape', found ", excerpt(header, 200));
    if (descr != "<f4" && descr != "<f8")
        fail(name, ": expected dtype '<f4' or '<f8' (little-endian float32/float64), found '", excerpt(descr), "'");
    if (fortran) fail(name, ": expected fortran_order False (C order), found True");

    // Check the length before allocating: a corrupt shape must not ask for terabytes. Nor may
    // the non-zero dimensions multiply past 2^60 when a 0 makes the array empty: (0, 2^40, 2^40)
    // would overflow whatever multiplies the trailing ones (and numel * 8 stays below 2^64).
    size_t item = descr == "<f4" ? 4 : 8, span = 1;  // span: the product of the non-zero dimensions
    bool empty = false;
    for (int64_t d : shape) {
        if (d == 0) empty = true;
        else if (span > (size_t(1) << 60) / size_t(d))
            fail(name, ": expected a shape whose non-zero dimensions multiply to at most 2^60, found ", shape_str(shape));
        else span *= size_t(d);
    }
    size_t expected = pre + hlen + (empty ? 0 : span) * item;
    if (bytes.size() != expected)
        fail(name, ": expected ", expected, " bytes (header ", pre + hlen, " + values of ", descr, " for shape ", shape_str(shape),
             "), found ", bytes.size());
    Tensor t(shape, item == 4 ? DType::F32 : DType::F64);
    std::memcpy(t.raw(), bytes.data() + pre + hlen, t.nbytes());
    return t;
}

Tensor read_npy(const std::string& path) { return decode_npy(read_file(path), path); }

}  // namespace dl
