// The state file holds PSKs (app/model/store.*), like the config file (test_config_hygiene.cpp):
// parse_state_and_wipe zeroes the text it parsed, on success and on every error; Store::load
// frees no copy of the file's text unwiped. The second is checked on the heap itself: this
// binary replaces operator new/delete, and while armed, every block freed is searched for two
// PSK lines more than 1 KiB apart (only a copy of the whole text holds both: yaml-cpp's own
// read-ahead and token buffers, outside our reach, hold pieces of at most 2 KiB).
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <string>

#include "app/model/store.hpp"

namespace {

std::atomic<bool> g_armed{false};
std::atomic<int> g_freed_with_text{0};
// Set before arming; plain char arrays so the scan allocates nothing.
char g_needle1[64], g_needle2[64];

void scan_and_free(void* p) noexcept {
  if (p != nullptr && g_armed.load(std::memory_order_relaxed)) {
    const std::size_t n = malloc_usable_size(p);
    const auto* b = static_cast<const char*>(p);
    if (memmem(b, n, g_needle1, std::strlen(g_needle1)) != nullptr &&
        memmem(b, n, g_needle2, std::strlen(g_needle2)) != nullptr)
      g_freed_with_text.fetch_add(1, std::memory_order_relaxed);
  }
  std::free(p);
}

void* checked_malloc(std::size_t n) {
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) { return checked_malloc(n); }
void* operator new[](std::size_t n) { return checked_malloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { scan_and_free(p); }
void operator delete[](void* p) noexcept { scan_and_free(p); }
void operator delete(void* p, std::size_t) noexcept { scan_and_free(p); }
void operator delete[](void* p, std::size_t) noexcept { scan_and_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { scan_and_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { scan_and_free(p); }

namespace ipsecgw::model {
namespace {

Environment env() {
  Environment e;
  e.router_id = stable_uuid("router:ipsecgw");
  e.subnets = {{stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"}};
  return e;
}

const std::string kPsk1 = "first-state-file-secret-0123456789";
const std::string kPsk2 = "second-state-file-secret-9876543210";

// A state file with two connections whose PSK lines are more than 4 KiB apart.
std::string state_text() {
  std::string pad;
  for (int i = 0; i < 100; ++i)
    pad += "# padding line " + std::to_string(i) + " ..............................\n";
  auto conn = [](const char* name, const char* peer, const char* cidr, const std::string& psk) {
    return std::string("  - name: ") + name + "\n    peer_address: " + peer +
           "\n    peer_id: " + peer + "\n    peer_cidrs: [" + cidr + "]\n    psk: \"" + psk +
           "\"\n    ikepolicy: ike\n    ipsecpolicy: esp\n";
  };
  return "vpnservices:\n  - {name: vpn, router_id: " + env().router_id +
         ", subnet_id: " + env().subnets[0].id +
         "}\nikepolicies: [{name: ike}]\nipsecpolicies: [{name: esp}]\n"
         "ipsec_site_connections:\n" +
         conn("c1", "198.51.100.20", "10.2.0.0/16", kPsk1) + pad +
         conn("c2", "198.51.100.30", "10.3.0.0/16", kPsk2);
}

bool all_zero(const std::string& s) { return s.find_first_not_of('\0') == std::string::npos; }

TEST(StoreHygiene, ParseStateAndWipeZeroesTheText) {
  std::string text = state_text();
  auto r = parse_state_and_wipe(text, env());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(all_zero(text));
  ASSERT_EQ(r->ipsec_site_connections.size(), 2u);
  EXPECT_EQ(r->ipsec_site_connections[0].psk, kPsk1);
  EXPECT_EQ(r->ipsec_site_connections[1].psk, kPsk2);
  // ... after a syntax error, an unknown key and a model error too.
  for (std::string bad : {state_text() + "\n  - [unclosed", state_text() + "bogus: 1\n",
                          state_text() + "  - {name: c3, psk: \"" + kPsk1 + "\"}\n"}) {
    EXPECT_FALSE(parse_state_and_wipe(bad, env()).ok());
    EXPECT_TRUE(all_zero(bad));
  }
}

TEST(StoreHygiene, LoadFreesNoCopyOfTheFileUnwiped) {
  char tmpl[] = "/tmp/ipsecgw-store-hygiene-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/state.yaml";
  {
    const std::string text = state_text();
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(text.data(), 1, text.size(), f), text.size());
    std::fclose(f);
    ::chmod(path.c_str(), 0600);
  }
  std::snprintf(g_needle1, sizeof g_needle1, "psk: \"%s\"", kPsk1.c_str());
  std::snprintf(g_needle2, sizeof g_needle2, "psk: \"%s\"", kPsk2.c_str());
  // The check can see a copy: one freed while armed is counted.
  g_freed_with_text = 0;
  g_armed = true;
  delete new std::string(state_text());
  g_armed = false;
  ASSERT_EQ(g_freed_with_text.load(), 1) << "the freed-block scan does not work";

  g_freed_with_text = 0;
  g_armed = true;
  {
    auto r = Store(path).load(env());
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r->ipsec_site_connections.size(), 2u);
  }
  g_armed = false;
  EXPECT_EQ(g_freed_with_text.load(), 0) << "copies of the state file's text freed unwiped";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsecgw::model
