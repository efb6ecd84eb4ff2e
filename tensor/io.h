// Files: whole-file reads with clear errors, and atomic writes (temporary file in the same
// folder, flushed and fsync'ed, then renamed over the target), so a crash or Ctrl-C in the middle
// of a save never leaves a half-written checkpoint or image where a good one was.
#pragma once
#include <string>
#include <string_view>

namespace dl {

// The file's bytes; throws dl::Error naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes bytes to path atomically; creates no folders. Throws dl::Error naming the path.
void write_file_atomic(const std::string& path, std::string_view bytes);

bool file_exists(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p

}  // namespace dl
