// Replay + mutation driver for the libFuzzer targets of tests/fuzz, without libFuzzer: a main()
// that a target (a file defining LLVMFuzzerTestOneInput, and optionally LLVMFuzzerInitialize)
// is linked with, so the targets build with gcc as ordinary test executables (meson suite
// 'fuzz', and under AddressSanitizer in scripts/test's asan pass).
//
//   fuzz_replay_<target> [--iterations N] [--seed S] [--max-len L] [--timeout SEC] PATH...
//
// 1. Every file of each PATH (a directory of seeds, or a single file, e.g. a crash artifact)
//    is fed to the target as is.
// 2. N mutated inputs (default 20000): a seed or one of the recent mutants, with 1-8 random
//    mutations (bit flips, interesting bytes, byte ranges inserted / deleted / duplicated /
//    copied, truncation, splices with another seed, 2/4-byte fields set to boundary values or
//    their value +-1 in either byte order). The PRNG is std::mt19937_64 seeded with S (default
//    1), so a run is deterministic: the same binary, seeds and arguments give the same inputs.
//
// Each input lives in a heap buffer of exactly its size, so AddressSanitizer sees any read past
// its end. A crash, an ASan report, the target's own abort() or an input running longer than
// --timeout seconds (default 25) fails the run (non-zero exit); the input is written first to
// ./fuzz-crash-<target>-<n> (re-run it: fuzz_replay_<target> <that file>; the libFuzzer build
// of the target takes the same file). Prints the number of inputs run.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);
// From the sanitizer runtime when it is linked in (-fsanitize=address): called before an ASan
// report ends the process, so the input that caused it is saved first.
extern "C" __attribute__((weak)) void __sanitizer_set_death_callback(void (*callback)(void));

namespace {

using Bytes = std::vector<std::uint8_t>;

// The input being run, for the crash/timeout handlers (async-signal-safe writes only).
const std::uint8_t* g_cur_data = nullptr;
std::size_t g_cur_size = 0;
char g_artifact[512] = "";
char g_what[256] = "";  // "seed file ..." or "mutant n of seed #k"
volatile sig_atomic_t g_dumped = 0;

void write_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w <= 0) return;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

void say(const char* s) { write_all(2, s, std::strlen(s)); }

// Saves the current input to g_artifact (once).
void dump_current() {
  if (g_dumped || g_cur_data == nullptr || g_artifact[0] == '\0') return;
  g_dumped = 1;
  int fd = ::open(g_artifact, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  write_all(fd, g_cur_data, g_cur_size);
  ::close(fd);
  say("fuzz_replay: failing input (");
  say(g_what);
  say(") written to ");
  say(g_artifact);
  say("\n");
}

void on_fatal_signal(int sig) {
  say(sig == SIGALRM ? "fuzz_replay: input timed out\n" : "fuzz_replay: fatal signal\n");
  dump_current();
  ::signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
  ::raise(sig == SIGALRM ? SIGABRT : sig);
}

void on_sanitizer_death() { dump_current(); }

class Runner {
 public:
  Runner(std::string target, unsigned timeout_s) : target_(std::move(target)), timeout_s_(timeout_s) {}

  void run(const Bytes& in, const std::string& what) {
    // Exactly-sized heap copy: one byte read past the end is an ASan heap-buffer-overflow.
    std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[in.size()]);
    if (!in.empty()) std::memcpy(buf.get(), in.data(), in.size());
    std::snprintf(g_artifact, sizeof g_artifact, "fuzz-crash-%s-%llu", target_.c_str(),
                  static_cast<unsigned long long>(count_));
    std::snprintf(g_what, sizeof g_what, "input %llu: %s", static_cast<unsigned long long>(count_),
                  what.c_str());
    g_cur_data = buf.get();
    g_cur_size = in.size();
    if (timeout_s_ != 0) ::alarm(timeout_s_);
    LLVMFuzzerTestOneInput(buf.get(), in.size());
    if (timeout_s_ != 0) ::alarm(0);
    g_cur_data = nullptr;
    ++count_;
  }

  std::uint64_t count() const { return count_; }

 private:
  std::string target_;
  unsigned timeout_s_;
  std::uint64_t count_ = 0;
};

// Boundary values for 1/2/4-byte fields (lengths, counts, ports, SPIs, sequence numbers).
constexpr std::uint32_t kInteresting[] = {0,      1,      2,          0x7f,       0x80,
                                          0xff,   0x100,  0x3ff,      0x400,      0x7fff,
                                          0x8000, 0xffff, 0x10000,    0x7fffffff, 0x80000000,
                                          0xfffffffe, 0xffffffff, 16, 20, 64};

class Mutator {
 public:
  Mutator(std::uint64_t seed, std::size_t max_len, const std::vector<Bytes>& seeds)
      : rng_(seed), max_len_(max_len), seeds_(seeds) {}

  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng_() % n); }
  std::uint8_t byte() { return static_cast<std::uint8_t>(rng_()); }

  Bytes next(std::string& what) {
    Bytes b;
    // Mostly a seed; sometimes a recent mutant, to stack more mutations on what got deeper.
    if (!recent_.empty() && below(4) == 0) {
      b = recent_[below(recent_.size())];
      what = "mutant of a recent mutant";
    } else {
      const std::size_t k = below(seeds_.size());
      b = seeds_[k];
      what = "mutant of seed #" + std::to_string(k);
    }
    const std::size_t n = 1 + below(8);
    for (std::size_t i = 0; i < n; ++i) mutate(b);
    if (b.size() > max_len_) b.resize(max_len_);
    if (recent_.size() < kRecent)
      recent_.push_back(b);
    else
      recent_[below(kRecent)] = b;
    return b;
  }

 private:
  static constexpr std::size_t kRecent = 64;

  const Bytes& other_seed() { return seeds_[below(seeds_.size())]; }

  void put(Bytes& b, std::size_t at, std::uint32_t v, std::size_t width, bool big_endian) {
    for (std::size_t i = 0; i < width; ++i) {
      const std::size_t shift = 8 * (big_endian ? width - 1 - i : i);
      b[at + i] = static_cast<std::uint8_t>(v >> shift);
    }
  }
  std::uint32_t get(const Bytes& b, std::size_t at, std::size_t width, bool big_endian) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < width; ++i) {
      const std::size_t shift = 8 * (big_endian ? width - 1 - i : i);
      v |= std::uint32_t{b[at + i]} << shift;
    }
    return v;
  }

  void mutate(Bytes& b) {
    switch (below(12)) {
      case 0:  // flip one bit
        if (!b.empty()) b[below(b.size())] ^= static_cast<std::uint8_t>(1u << below(8));
        break;
      case 1: {  // a byte set to 0x00, 0xff or anything
        if (b.empty()) break;
        static constexpr std::uint8_t kBytes[] = {0x00, 0xff, 0x7f, 0x80};
        b[below(b.size())] = below(3) == 0 ? byte() : kBytes[below(4)];
        break;
      }
      case 2: {  // small add/subtract on a byte
        if (b.empty()) break;
        const int d = static_cast<int>(below(35)) - 17;
        auto& x = b[below(b.size())];
        x = static_cast<std::uint8_t>(x + d);
        break;
      }
      case 3: {  // insert 1..16 bytes (random, or one repeated)
        const std::size_t at = below(b.size() + 1), n = 1 + below(16);
        Bytes ins(n);
        if (below(2) == 0) {
          std::fill(ins.begin(), ins.end(), byte());
        } else {
          for (auto& x : ins) x = byte();
        }
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
        break;
      }
      case 4: {  // delete 1..16 bytes
        if (b.empty()) break;
        const std::size_t at = below(b.size());
        const std::size_t n = std::min(b.size() - at, 1 + below(16));
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
                b.begin() + static_cast<std::ptrdiff_t>(at + n));
        break;
      }
      case 5:  // truncate
        b.resize(below(b.size() + 1));
        break;
      case 6: {  // duplicate a chunk (inserted right after itself or elsewhere)
        if (b.empty()) break;
        const std::size_t from = below(b.size());
        const std::size_t n = 1 + below(std::min<std::size_t>(b.size() - from, 64));
        const Bytes chunk(b.begin() + static_cast<std::ptrdiff_t>(from),
                          b.begin() + static_cast<std::ptrdiff_t>(from + n));
        const std::size_t at = below(2) == 0 ? from + n : below(b.size() + 1);
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        break;
      }
      case 7: {  // copy a chunk over another place
        if (b.size() < 2) break;
        const std::size_t from = below(b.size()), to = below(b.size());
        const std::size_t n = 1 + below(std::min(b.size() - from, b.size() - to));
        std::memmove(b.data() + to, b.data() + from, n);
        break;
      }
      case 8: {  // splice: a prefix of this input + a suffix of another seed
        const Bytes& o = other_seed();
        const std::size_t cut = below(b.size() + 1), ocut = below(o.size() + 1);
        b.resize(cut);
        b.insert(b.end(), o.begin() + static_cast<std::ptrdiff_t>(ocut), o.end());
        break;
      }
      case 9: {  // insert a piece of another seed (its tokens, headers, keys...)
        const Bytes& o = other_seed();
        if (o.empty()) break;
        const std::size_t from = below(o.size());
        const std::size_t n = 1 + below(std::min<std::size_t>(o.size() - from, 48));
        const std::size_t at = below(b.size() + 1);
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at),
                 o.begin() + static_cast<std::ptrdiff_t>(from),
                 o.begin() + static_cast<std::ptrdiff_t>(from + n));
        break;
      }
      default: {  // a 1/2/4-byte field set to a boundary value, or its value +-1 (lengths)
        const std::size_t width = std::size_t{1} << below(3);
        if (b.size() < width) break;
        const std::size_t at = below(b.size() - width + 1);
        const bool be = below(2) == 0;
        std::uint32_t v;
        switch (below(4)) {
          case 0: v = get(b, at, width, be) + 1; break;
          case 1: v = get(b, at, width, be) - 1; break;
          case 2: v = static_cast<std::uint32_t>(b.size() - at); break;  // "rest of input"
          default: v = kInteresting[below(std::size(kInteresting))]; break;
        }
        put(b, at, v, width, be);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  std::size_t max_len_;
  const std::vector<Bytes>& seeds_;
  std::vector<Bytes> recent_;
};

bool read_file(const std::filesystem::path& p, Bytes& out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--iterations N] [--seed S] [--max-len L] [--timeout SEC] "
               "SEEDS_DIR_OR_FILE...\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t iterations = 20000, seed = 1;
  std::size_t max_len = 4096;  // as scripts/fuzz's -max_len
  unsigned timeout_s = 25;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::uint64_t {
      if (i + 1 >= argc) usage(argv[0]);
      char* end = nullptr;
      const std::uint64_t v = std::strtoull(argv[++i], &end, 0);
      if (end == nullptr || *end != '\0') usage(argv[0]);
      return v;
    };
    if (a == "--iterations") iterations = value();
    else if (a == "--seed") seed = value();
    else if (a == "--max-len") max_len = value();
    else if (a == "--timeout") timeout_s = static_cast<unsigned>(value());
    else if (a.rfind("--", 0) == 0) usage(argv[0]);
    else paths.push_back(a);
  }
  if (paths.empty()) usage(argv[0]);
  const std::string target = std::filesystem::path(argv[0]).filename().string();

  // Seeds, in a fixed order (directory order is not).
  std::vector<std::filesystem::path> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(p, ec))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (std::filesystem::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "%s: %s: no such file or directory\n", target.c_str(), p.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<Bytes> seeds;
  for (const auto& f : files) {
    Bytes b;
    if (!read_file(f, b)) {
      std::fprintf(stderr, "%s: cannot read %s\n", target.c_str(), f.c_str());
      return 2;
    }
    if (b.size() > max_len) b.resize(max_len);
    seeds.push_back(std::move(b));
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "%s: no seed files in the given paths\n", target.c_str());
    return 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM}) sigaction(sig, &sa, nullptr);
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(on_sanitizer_death);

  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);

  const auto t0 = std::chrono::steady_clock::now();
  Runner runner(target, timeout_s);
  for (std::size_t i = 0; i < seeds.size(); ++i) runner.run(seeds[i], "seed file " + files[i].string());
  const std::uint64_t seed_runs = runner.count();

  Mutator mut(seed, max_len, seeds);
  std::string what;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    const Bytes b = mut.next(what);
    runner.run(b, what);
  }
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: %llu inputs run (%llu seed files, %llu mutated, PRNG seed %llu) in %.1f s, "
              "no crash\n",
              target.c_str(), static_cast<unsigned long long>(runner.count()),
              static_cast<unsigned long long>(seed_runs),
              static_cast<unsigned long long>(runner.count() - seed_runs),
              static_cast<unsigned long long>(seed), s);
  return 0;
}
