// The configuration file holds PSKs: it is refused when group or others may read it (with
// why and how to fix it), its raw text is wiped once parsed, an empty PSK is refused and a
// short one warned about, naming the field.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "app/config.hpp"

namespace ipsecgw::app {
namespace {

std::string config_with_psk(const std::string& psk) {
  return R"(
vpnservice:
  ports:
    unprotected: {port: 0, address: 198.51.100.10/24}
    protected: {port: 1, address: 10.1.0.1/24}
ikepolicies: [{name: ike}]
ipsecpolicies: [{name: esp}]
ipsec_site_connections:
  - {name: c, peer_address: 198.51.100.20, peer_cidrs: [10.2.0.0/16], psk: ")" +
         psk + R"(", ikepolicy: ike, ipsecpolicy: esp}
)";
}

// A temporary file with `text` and `mode`, removed at the end of the test.
class TempConfig {
 public:
  TempConfig(const std::string& text, mode_t mode) {
    char tmpl[] = "/tmp/ipsecgw-hygiene-XXXXXX";
    const int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
    EXPECT_EQ(chmod(path_.c_str(), mode), 0);
  }
  ~TempConfig() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string kGoodPsk = "a-long-enough-secret-psk";

TEST(ConfigHygiene, FileReadableByGroupOrOthersIsRefusedWithWhyAndFix) {
  for (mode_t m : {0644, 0640, 0604, 0620, 0602}) {
    TempConfig f(config_with_psk(kGoodPsk), m);
    auto r = load_config(f.path());
    ASSERT_FALSE(r.ok()) << std::oct << m;
    char shown[8];
    std::snprintf(shown, sizeof shown, "%04o", static_cast<unsigned>(m));
    EXPECT_NE(r.error().find(shown), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("pre-shared keys"), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("chmod 600 '" + f.path() + "'"), std::string::npos) << r.error();
  }
}

TEST(ConfigHygiene, OwnerOnlyFileLoads) {
  for (mode_t m : {0600, 0400}) {
    TempConfig f(config_with_psk(kGoodPsk), m);
    auto r = load_config(f.path());
    EXPECT_TRUE(r.ok()) << r.error();
  }
}

TEST(ConfigHygiene, RawTextIsWipedAfterParsing) {
  std::string text = config_with_psk(kGoodPsk);
  auto r = parse_config_and_wipe(text);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(text.find_first_not_of('\0'), std::string::npos);
  // ... and after a syntax error too.
  std::string bad = config_with_psk(kGoodPsk) + "\n  - [unclosed";
  EXPECT_FALSE(parse_config_and_wipe(bad).ok());
  EXPECT_EQ(bad.find_first_not_of('\0'), std::string::npos);
  // The PSK itself is what the connection holds.
  const auto& psk = r->ipsec_site_connections.at(0).psk;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(psk.data()), psk.size()), kGoodPsk);
}

TEST(ConfigHygiene, EmptyPskIsRefusedNamingTheField) {
  auto r = parse_config(config_with_psk(""));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("ipsec_site_connections[0].psk: must not be empty"), std::string::npos)
      << r.error();
}

TEST(ConfigHygiene, ShortPskIsAcceptedWithAWarningNamingTheField) {
  auto r = parse_config(config_with_psk("fifteen-bytes!!"));
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("ipsec_site_connections[0].psk: 15 bytes"), std::string::npos)
      << r->warnings[0];
  EXPECT_EQ(r->warnings[0].find("fifteen"), std::string::npos) << "PSK shown";
  auto ok = parse_config(config_with_psk("sixteen-bytes!!!"));
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_TRUE(ok->warnings.empty());
}

}  // namespace
}  // namespace ipsecgw::app
