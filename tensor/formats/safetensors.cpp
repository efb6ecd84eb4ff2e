#include "tensor/formats/safetensors.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "tensor/formats/io.h"
#include "tensor/formats/json.h"
#include "tensor/parse.h"

namespace dl {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; this code copies bytes as they are");

// The largest header the reader accepts (the reference implementation's limit, 100 MB).
constexpr uint64_t kMaxHeader = 100'000'000;

static size_t dtype_bytes(const std::string& dtype) {
    if (dtype == "F32") return 4;
    if (dtype == "F64" || dtype == "I64") return 8;
    return 0;  // unknown
}

// The header is read by tensor/formats/json.h; the checks below are safetensors' own.
namespace {

// A JSON number that must be a non-negative integer (a dimension or an offset).
uint64_t to_index(const Json& v, const std::string& where, const std::string& what) {
    uint64_t out = 0;
    if (v.kind == Json::NUMBER && read_integer<uint64_t>(v.text, out)) return out;
    fail(where, ": ", what, ": expected a non-negative integer, found ", v.kind == Json::NUMBER ? v.text : json_kind_name(v.kind));
}

// ---- the JSON writer ----------------------------------------------------------------------
void write_string(std::string& out, const std::string& s) {
    out += '"';
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (u < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else out += c;  // UTF-8 bytes pass through
    }
    out += '"';
}

}  // namespace

// ---- building and reading entries ---------------------------------------------------------
void Safetensors::add_raw(const std::string& name, const char* dtype, Shape shape, const void* data, size_t bytes) {
    if (name == "__metadata__") fail("safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    if (contains(name)) fail("safetensors: a tensor named \"", name, "\" was already added");
    if (size_t(shape_numel(shape)) * dtype_bytes(dtype) != bytes)
        fail("safetensors: \"", name, "\": ", bytes, " bytes do not hold ", dtype, " ", shape_str(shape));
    index_[name] = entries_.size();
    entries_.push_back({name, dtype, std::move(shape), std::string(static_cast<const char*>(data), bytes)});
}

void Safetensors::add(const std::string& name, const Tensor& t) {
    add_raw(name, t.dtype() == DType::F32 ? "F32" : "F64", t.shape(), t.raw(), t.nbytes());
}

void Safetensors::add_i64(const std::string& name, const std::vector<int64_t>& values, Shape shape) {
    add_raw(name, "I64", std::move(shape), values.data(), values.size() * sizeof(int64_t));
}

const SafetensorsEntry& Safetensors::entry(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) fail(source, ": no tensor named \"", name, "\"");
    return entries_[it->second];
}

Tensor Safetensors::tensor(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    if (e.dtype != "F32" && e.dtype != "F64") fail(source, ": \"", name, "\" is ", e.dtype, ", expected F32 or F64");
    Tensor t(e.shape, e.dtype == "F32" ? DType::F32 : DType::F64);
    if (!e.data.empty()) std::memcpy(t.raw(), e.data.data(), e.data.size());
    return t;
}

std::vector<int64_t> Safetensors::i64(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    if (e.dtype != "I64") fail(source, ": \"", name, "\" is ", e.dtype, ", expected I64");
    std::vector<int64_t> v(e.data.size() / sizeof(int64_t));
    if (!v.empty()) std::memcpy(v.data(), e.data.data(), e.data.size());  // an empty vector's data() may be null
    return v;
}

// ---- writing ------------------------------------------------------------------------------
std::string Safetensors::serialize() const {
    std::string header = "{";
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        bool first = true;
        for (const auto& [k, v] : metadata) {
            if (!first) header += ',';
            first = false;
            write_string(header, k);
            header += ':';
            write_string(header, v);
        }
        header += '}';
    }
    uint64_t offset = 0;
    for (const SafetensorsEntry& e : entries_) {
        if (header.size() > 1) header += ',';
        write_string(header, e.name);
        header += cat(":{\"dtype\":\"", e.dtype, "\",\"shape\":[");
        for (size_t i = 0; i < e.shape.size(); i++) header += cat(i ? "," : "", e.shape[i]);
        header += cat("],\"data_offsets\":[", offset, ",", offset + e.data.size(), "]}");
        offset += e.data.size();
    }
    header += '}';
    header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned

    std::string out;
    out.reserve(8 + header.size() + offset);
    uint64_t n = header.size();
    out.append(reinterpret_cast<const char*>(&n), 8);
    out += header;
    for (const SafetensorsEntry& e : entries_) out += e.data;
    return out;
}

void Safetensors::save(const std::string& path) const { write_file_atomic(path, serialize()); }

// ---- reading ------------------------------------------------------------------------------
Safetensors Safetensors::parse(std::string_view bytes, const std::string& source) {
    if (bytes.size() < 8) fail(source, ": truncated: ", bytes.size(), " bytes, expected at least 8 (the header length)");
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    if (n > kMaxHeader || n > bytes.size() - 8)
        fail(source, ": bad header length ", n, ": the file has ", bytes.size() - 8, " bytes after the 8-byte length",
             n > kMaxHeader ? cat(" and the limit is ", kMaxHeader) : "");
    std::string_view data = bytes.substr(8 + n);  // the byte buffer the offsets count in

    JsonReader reader(bytes.substr(8, n), source, "header");
    Json root = reader.value();
    reader.finish();  // trailing spaces (the padding) are whitespace
    if (root.kind != Json::OBJECT) fail(source, ": the header is ", json_kind_name(root.kind), ", expected an object");

    Safetensors st;
    st.source = source;
    struct Span { uint64_t begin, end; std::string name; };
    std::vector<Span> spans;
    for (const auto& [name, v] : root.members) {
        std::string where = cat(source, ": \"", excerpt(name), "\"");
        if (v.kind != Json::OBJECT) fail(where, ": expected an object, found ", json_kind_name(v.kind));
        if (name == "__metadata__") {
            for (const auto& [k, s] : v.members) {
                if (s.kind != Json::STRING) fail(where, ": \"", excerpt(k), "\" is ", json_kind_name(s.kind), ", expected a string");
                st.metadata[k] = s.text;
            }
            continue;
        }
        const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
        for (const auto& [k, f] : v.members) {
            if (k == "dtype") dtype = &f;
            else if (k == "shape") shape = &f;
            else if (k == "data_offsets") offsets = &f;
            else fail(where, ": unexpected field \"", excerpt(k), "\", expected only dtype, shape and data_offsets");
        }
        if (!dtype || !shape || !offsets) fail(where, ": missing field \"", !dtype ? "dtype" : !shape ? "shape" : "data_offsets", "\"");
        if (dtype->kind != Json::STRING) fail(where, ": dtype is ", json_kind_name(dtype->kind), ", expected a string");
        size_t esize = dtype_bytes(dtype->text);
        if (esize == 0) fail(where, ": unknown dtype \"", excerpt(dtype->text), "\", expected F32, F64 or I64");
        if (shape->kind != Json::ARRAY) fail(where, ": shape is ", json_kind_name(shape->kind), ", expected an array");
        Shape dims;
        for (const Json& d : shape->items) {
            uint64_t k = to_index(d, where, "shape");
            if (k > (uint64_t(1) << 40)) fail(where, ": shape dimension ", k, " is too large (above 2^40)");
            dims.push_back(int64_t(k));
        }
        // The non-zero dimensions multiply to at most 2^60, so that numel * 8 bytes cannot wrap:
        // (2^40, 2^21) F64 did, "needed" 0 bytes, and data_offsets [0, 0] made a tensor of 2^61
        // values over none. Zeros aside, so that (0, 2^40, 2^40) cannot overflow whatever
        // multiplies the trailing dimensions either.
        uint64_t span = 1;  // the product of the non-zero dimensions
        bool empty = false;
        for (int64_t k : dims) {
            if (k == 0) empty = true;
            else if (span > (uint64_t(1) << 60) / uint64_t(k))
                fail(where, ": shape ", shape_str(dims), " is too large: its non-zero dimensions multiply past 2^60");
            else span *= uint64_t(k);
        }
        const uint64_t numel = empty ? 0 : span;
        if (offsets->kind != Json::ARRAY || offsets->items.size() != 2)
            fail(where, ": data_offsets must be an array [begin, end]");
        uint64_t begin = to_index(offsets->items[0], where, "data_offsets"), end = to_index(offsets->items[1], where, "data_offsets");
        if (begin > end || end > data.size())
            fail(where, ": data_offsets [", begin, ", ", end, "] out of range: the data after the header has ", data.size(), " bytes");
        if (end - begin != numel * esize)
            fail(where, ": data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes, but ", dtype->text, " ",
                 shape_str(dims), " needs ", numel * esize);
        if (end > begin) spans.push_back({begin, end, name});  // an empty tensor overlaps nothing
        st.add_raw(name, dtype->text.c_str(), dims, data.data() + begin, end - begin);
    }
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < spans.size(); i++)
        if (spans[i].begin < spans[i - 1].end)
            fail(source, ": tensors \"", excerpt(spans[i - 1].name), "\" [", spans[i - 1].begin, ", ", spans[i - 1].end, ") and \"",
                 excerpt(spans[i].name), "\" [", spans[i].begin, ", ", spans[i].end, ") overlap");
    // The format asks the tensors to cover the byte buffer exactly: no hole between two, none
    // before the first, and no bytes after the last (a file with more is damaged or not ours).
    uint64_t covered = 0;
    for (const Span& sp : spans) {
        if (sp.begin != covered)
            fail(source, ": bytes [", covered, ", ", sp.begin, ") of the data belong to no tensor (before \"", excerpt(sp.name),
                 "\"); the tensors must cover the data exactly");
        covered = sp.end;
    }
    if (covered != data.size())
        fail(source, ": ", data.size() - covered, " bytes after the last tensor's data (the tensors cover ", covered, " of ",
             data.size(), "); the tensors must cover the data exactly");
    return st;
}

Safetensors Safetensors::load(const std::string& path) {
    std::string bytes = read_file(path);
    return parse(bytes, path);
}

}  // namespace dl
