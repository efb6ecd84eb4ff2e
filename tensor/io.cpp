#include "tensor/io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/tensor.h"

namespace dl {

std::string read_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path, ": cannot open for reading: ", std::strerror(errno));
    std::string bytes;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
    bool bad = std::ferror(f);
    std::fclose(f);
    if (bad) fail(path, ": read error");
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

std::vector<std::vector<double>> read_csv_numbers(const std::string& path, const std::string& header, size_t columns,
                                                  const std::string& header_desc) {
    std::vector<std::vector<double>> rows;
    if (!file_exists(path)) return rows;
    std::istringstream in(read_file(path));
    std::string line;
    for (int lineno = 1; std::getline(in, line); lineno++) {
        const std::string shown = line.size() > 80 ? line.substr(0, 80) + "..." : line;
        if (lineno == 1) {
            if (line != header) fail(path, ": line 1: expected ", header_desc, ", found '", shown, "'");
            continue;
        }
        if (line.empty()) continue;
        std::vector<double> row;
        std::istringstream fields(line);
        std::string f;
        bool ok = true;
        while (ok && std::getline(fields, f, ',')) {
            char* end = nullptr;
            row.push_back(std::strtod(f.c_str(), &end));
            ok = !f.empty() && *end == 0;
        }
        if (!ok || row.size() != columns)
            fail(path, ": line ", lineno, ": expected ", columns, " comma-separated numbers, found '", shown, "'");
        rows.push_back(std::move(row));
    }
    return rows;
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
