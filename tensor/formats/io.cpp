#include "tensor/formats/io.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/tensor.h"

namespace dl {

// What st_mode says a path is, for "expected a regular file, found ..." messages.
static const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "another kind of file";
}

// O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one. fstat then refuses
// whatever is not a regular file (reading a FIFO, /dev/zero or a tty could block or never end);
// for a regular file the flag changes nothing.
std::string read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail(path, ": cannot open for reading: ", std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        fail(path, ": cannot stat: ", std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(path, ": expected a regular file, found ", file_kind(st.st_mode));
    }
    std::string bytes;
    bytes.reserve(size_t(st.st_size));  // a hint: the file may still grow or shrink
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            fail(path, ": read error after ", bytes.size(), " bytes: ", std::strerror(e));
        }
        if (n == 0) break;
        bytes.append(buf, size_t(n));
    }
    ::close(fd);
    return bytes;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail(path, ": cannot create temporary file ", tmp, ": ", std::strerror(errno));
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            fail(path, ": write failed after ", done, " of ", bytes.size(), " bytes: ", std::strerror(e));
        }
        done += size_t(w);
    }
    int synced = ::fsync(fd), sync_errno = errno;  // close either way, so no descriptor leaks
    int closed = ::close(fd), close_errno = errno;
    if (synced != 0 || closed != 0) {
        ::unlink(tmp.c_str());
        fail(path, ": could not flush to disk: ", std::strerror(synced != 0 ? sync_errno : close_errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        fail(path, ": cannot rename ", tmp, " over it: ", std::strerror(e));
    }
}

std::vector<std::vector<double>> parse_csv_numbers(std::string_view text, const std::string& name, const std::string& header,
                                                   size_t columns, const std::string& header_desc, bool finite) {
    // A log that exists has its header: a file cut to nothing is damaged, not a run with no rows.
    if (text.empty()) fail(name, ": the file is empty; expected ", header_desc, " on line 1");
    std::vector<std::vector<double>> rows;
    size_t at = 0;
    for (size_t lineno = 1; at < text.size(); lineno++) {
        size_t eol = std::min(text.find('\n', at), text.size());
        std::string_view line = text.substr(at, eol - at);
        at = eol + 1;
        const std::string shown = excerpt(line);
        if (lineno == 1) {
            if (line != header) fail(name, ": line 1: expected ", header_desc, ", found '", shown, "'");
            continue;
        }
        if (line.empty()) continue;
        std::vector<double> row;
        bool ok = true;
        for (size_t f = 0; ok && f <= line.size();) {  // the fields between commas, an empty one refused
            size_t comma = std::min(line.find(',', f), line.size());
            std::string field(line.substr(f, comma - f));  // strtod wants a terminated string
            char* end = nullptr;
            row.push_back(std::strtod(field.c_str(), &end));
            ok = !field.empty() && end == field.c_str() + field.size();  // all of it (a NUL byte too)
            f = comma + 1;
        }
        if (!ok || row.size() != columns)
            fail(name, ": line ", lineno, ": expected ", columns, " comma-separated numbers, found '", shown, "'");
        // Callers cast the step to int64_t: NaN, 1e300 or 2.5 must not get that far.
        if (!(row[0] >= 0 && row[0] <= 9007199254740992.0 && row[0] == std::floor(row[0])))
            fail(name, ": line ", lineno, ": expected a step (a whole number from 0 to 2^53) first, found '", shown, "'");
        for (size_t f = 0; finite && f < row.size(); f++)
            if (!std::isfinite(row[f]))
                fail(name, ": line ", lineno, ": field ", f + 1, " is ", row[f], ", expected a finite number, in '", shown, "'");
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
    std::vector<std::string> removed;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        const std::string name = it->path().filename().string();
        const size_t at = name.rfind(".tmp.");
        if (at == std::string::npos || at == 0) continue;
        const std::string pid = name.substr(at + 5);
        if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        // kill(pid, 0) probes without signalling: ESRCH means no such process
        if (::kill(pid_t(std::stol(pid)), 0) == 0 || errno != ESRCH) continue;
        if (std::filesystem::remove(it->path(), ec)) removed.push_back(name);
    }
    return removed;
}

std::vector<std::vector<double>> read_csv_numbers(const std::string& path, const std::string& header, size_t columns,
                                                  const std::string& header_desc, bool finite) {
    if (!file_exists(path)) return {};
    return parse_csv_numbers(read_file(path), path, header, columns, header_desc, finite);
}

std::string excerpt(std::string_view bytes, size_t max) {
    std::string out;
    for (size_t i = 0; i < bytes.size() && i < max; i++) {
        unsigned char c = static_cast<unsigned char>(bytes[i]);
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
            out += buf;
        } else {
            out += char(c);
        }
    }
    if (bytes.size() > max) out += "...";
    return out;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) fail(path, ": cannot create folder: ", ec.message());
}

}  // namespace dl
