// Files: whole-file reads with clear errors, and atomic writes (temporary file in the same
// folder, flushed and fsync'ed, then renamed over the target), so a crash or Ctrl-C in the middle
// of a save never leaves a half-written checkpoint or image where a good one was.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace dl {

// The file's bytes; throws dl::Error naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes bytes to path atomically; creates no folders. Throws dl::Error naming the path.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The rows of a CSV file of numbers under a fixed header line (the training logs). A missing file
// has no rows; another header, or a row that is not `columns` numbers, is a dl::Error naming the
// file and the line, with `header_desc` saying what header was expected.
std::vector<std::vector<double>> read_csv_numbers(const std::string& path, const std::string& header, size_t columns,
                                                  const std::string& header_desc);

bool file_exists(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p

}  // namespace dl
