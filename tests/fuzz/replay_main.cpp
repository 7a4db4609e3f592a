// The short fuzz run of `make test`: a standalone driver for one libFuzzer target
// (LLVMFuzzerTestOneInput), built by the main compiler without libFuzzer.
//
//   fuzz-replay-<name> [--mutations N] [--seed S] [--max-seconds T] DIR...
//
// Runs every file of each DIR (the seed corpus and the regressions), then N inputs made
// from them by deterministic mutations (std::mt19937_64 seeded with S: bit flips,
// interesting bytes, inserts, deletes, duplicated ranges and splices of two entries),
// so a run is the same on every machine. --max-seconds only caps a run on a slow
// machine (it stops early and says so); it is not a test of speed. A crash or a
// violated invariant aborts; the handler first saves the input that did it as
// fuzz-crash-<name> in the working directory and prints its path, ready to go into
// tests/fuzz/regressions/<name>/.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using Input = std::vector<uint8_t>;

constexpr size_t kMaxInputBytes = 1 << 16;

// What the crash handler saves: set before each input runs.
const Input* g_current = nullptr;
char g_crash_path[4096];
char g_description[512];

void on_crash(int sig) {
  const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0 && g_current != nullptr) {
    ssize_t ignored = ::write(fd, g_current->data(), g_current->size());
    (void)ignored;
    ::close(fd);
  }
  const char* parts[] = {"replay: crashed on ", g_description, "; the input is in ", g_crash_path,
                         "\n"};
  for (const char* p : parts) {
    ssize_t ignored = ::write(2, p, std::strlen(p));
    (void)ignored;
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run(const Input& input, const std::string& description) {
  g_current = &input;
  std::snprintf(g_description, sizeof(g_description), "%s", description.c_str());
  LLVMFuzzerTestOneInput(input.data(), input.size());
  g_current = nullptr;
}

std::vector<std::filesystem::path> files_of(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

Input read_input(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Input(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One mutation of `input`, in place; `other` is a second corpus entry for splices.
void mutate_once(Input& input, const Input& other, std::mt19937_64& rng) {
  static constexpr uint8_t kInteresting[] = {0,   0xff, 0x80, 0x7f, '"',  '\\', '{', '}',
                                             '[', ']',  ':',  ',',  '\n', '\r', ' ', '0',
                                             '-', '9',  'e',  '.',  '%',  '\t'};
  auto below = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  switch (rng() % 7) {
    case 0:  // flip a bit
      if (!input.empty()) input[below(input.size())] ^= static_cast<uint8_t>(1u << (rng() % 8));
      break;
    case 1:  // an interesting byte in place of one
      if (!input.empty()) input[below(input.size())] = kInteresting[below(sizeof(kInteresting))];
      break;
    case 2: {  // insert random bytes
      const size_t at = below(input.size() + 1);
      const size_t n = 1 + below(8);
      Input bytes(n);
      for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin(), bytes.end());
      break;
    }
    case 3: {  // delete a range
      if (input.empty()) break;
      const size_t at = below(input.size());
      const size_t n = 1 + below(std::min<size_t>(16, input.size() - at));
      input.erase(input.begin() + static_cast<std::ptrdiff_t>(at),
                  input.begin() + static_cast<std::ptrdiff_t>(at + n));
      break;
    }
    case 4: {  // duplicate a range
      if (input.empty()) break;
      const size_t at = below(input.size());
      const size_t n = 1 + below(std::min<size_t>(32, input.size() - at));
      const Input range(input.begin() + static_cast<std::ptrdiff_t>(at),
                        input.begin() + static_cast<std::ptrdiff_t>(at + n));
      const size_t to = below(input.size() + 1);
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(to), range.begin(), range.end());
      break;
    }
    case 5: {  // splice: this entry's head, the other's tail
      const size_t head = below(input.size() + 1);
      const size_t tail = below(other.size() + 1);
      input.resize(head);
      input.insert(input.end(), other.begin() + static_cast<std::ptrdiff_t>(tail), other.end());
      break;
    }
    default: {  // a piece of the other entry inserted
      if (other.empty()) break;
      const size_t from = below(other.size());
      const size_t n = 1 + below(std::min<size_t>(64, other.size() - from));
      const size_t to = below(input.size() + 1);
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(to),
                   other.begin() + static_cast<std::ptrdiff_t>(from),
                   other.begin() + static_cast<std::ptrdiff_t>(from + n));
      break;
    }
  }
  if (input.size() > kMaxInputBytes) input.resize(kMaxInputBytes);
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--mutations N] [--seed S] [--max-seconds T] DIR...\n", argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mutations = 0;
  uint64_t seed = 1;
  double max_seconds = 60;
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    char* end = nullptr;
    if (arg == "--mutations") {
      const std::string v = value();
      mutations = std::strtoll(v.c_str(), &end, 10);
      if (*end != '\0' || mutations < 0) usage(argv[0]);
    } else if (arg == "--seed") {
      const std::string v = value();
      seed = std::strtoull(v.c_str(), &end, 10);
      if (*end != '\0') usage(argv[0]);
    } else if (arg == "--max-seconds") {
      const std::string v = value();
      max_seconds = std::strtod(v.c_str(), &end);
      if (*end != '\0' || !(max_seconds > 0)) usage(argv[0]);
    } else if (arg.starts_with("--")) {
      usage(argv[0]);
    } else {
      dirs.push_back(arg);
    }
  }
  if (dirs.empty()) usage(argv[0]);
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  std::snprintf(g_crash_path, sizeof(g_crash_path), "%s/fuzz-crash-%s",
                std::filesystem::current_path().c_str(), name.c_str());
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_crash);

  const auto start = std::chrono::steady_clock::now();
  std::vector<Input> corpus;
  for (const std::string& dir : dirs) {
    for (const auto& path : files_of(dir)) {
      corpus.push_back(read_input(path));
      run(corpus.back(), path.string());
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  std::mt19937_64 rng(seed);
  int64_t done = 0;
  bool capped = false;
  for (; done < mutations; ++done) {
    if (done % 256 == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
            max_seconds) {
      capped = true;
      break;
    }
    Input input = corpus[rng() % corpus.size()];
    const Input& other = corpus[rng() % corpus.size()];
    const int64_t steps = 1 + static_cast<int64_t>(rng() % 4);
    for (int64_t s = 0; s < steps; ++s) mutate_once(input, other, rng);
    run(input, "mutation " + std::to_string(done) + " (seed " + std::to_string(seed) + ")");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu corpus inputs and %lld mutations in %.2f s%s\n", name.c_str(), corpus.size(),
              static_cast<long long>(done), seconds, capped ? " (stopped at --max-seconds)" : "");
  return 0;
}
