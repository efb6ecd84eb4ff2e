// Files: whole-file reads with clear errors, and atomic writes (temporary file in the same
// folder, flushed and fsync'ed, then renamed over the target), so a crash or Ctrl-C in the middle
// of a save never leaves a half-written checkpoint or image where a good one was.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace dl {

// The file's bytes; throws dl::Error naming the path when it is missing, unreadable or not a
// regular file (a folder, a FIFO, a device: refused at once, never read from or waited on).
std::string read_file(const std::string& path);

// Writes bytes to path atomically; creates no folders. Throws dl::Error naming the path.
// The temporary file is `<path>.tmp.<pid>`.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Removes the temporary files that writers killed mid-write (kill -9, power loss) left in dir:
// `<name>.tmp.<pid>` whose process no longer runs. A live process's file is left to it. Returns
// the names removed; a folder that does not exist has none.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

// The rows of a CSV file of numbers under a fixed header line (the training logs), the first
// column a step: a whole number in [0, 2^53]. A missing file has no rows; another header, a row
// that is not `columns` numbers, or a first column that is not a step, is a dl::Error naming the
// file and the line, with `header_desc` saying what header was expected. With `finite`, a NaN or
// an infinity in any field is such an error too (for files whose meaning excludes them).
std::vector<std::vector<double>> read_csv_numbers(const std::string& path, const std::string& header, size_t columns,
                                                  const std::string& header_desc, bool finite = false);
// The same over the text of such a file; `name` names it in errors.
std::vector<std::vector<double>> parse_csv_numbers(std::string_view text, const std::string& name, const std::string& header,
                                                   size_t columns, const std::string& header_desc, bool finite = false);

// Bytes from a file, fit for an error message: control bytes (below 0x20, and 0x7f) written as
// \xNN, so that a NUL cannot cut the message short (what() is a C string) nor a '\r' overwrite
// it; cut after `max` bytes with "..." added. Other bytes, UTF-8 included, pass as they are.
std::string excerpt(std::string_view bytes, size_t max = 80);

bool file_exists(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p

}  // namespace dl
