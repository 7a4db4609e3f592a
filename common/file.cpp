#include "common/file.h"

#include <fstream>
#include <sstream>

namespace moeserve {

StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(path + ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return internal_error(path + ": read failed");
  return buffer.str();
}

}  // namespace moeserve
