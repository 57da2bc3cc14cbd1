// The gateway's desired state at start: the configuration file's Neutron sections read by the
// model (every example loads; static-SA connections are left out), and the state file wins.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "app/config.hpp"
#include "app/desired_state.hpp"
#include "app/model/store.hpp"

namespace ipsecgw::app {
namespace {

// The examples are checked out readable by group and others, which ipsecgw refuses for a file
// holding PSKs: each is used through an owner-only (0600) copy, removed at exit.
struct ExampleCopies {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("ipsecgw-examples-" + std::to_string(::getpid()));
  ~ExampleCopies() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};
ExampleCopies g_copies;

std::string example(const char* name) {
  namespace fs = std::filesystem;
  fs::create_directories(g_copies.dir);
  const fs::path dst = g_copies.dir / name;
  fs::copy_file(fs::path(IPSECGW_EXAMPLES_DIR) / name, dst, fs::copy_options::overwrite_existing);
  fs::permissions(dst, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  return dst.string();
}

// The API's desired state reads the configuration file too: the same mode check.
TEST(DesiredState, GroupReadableConfigIsRefused) {
  const std::string path = example("gw-ike.yaml");
  std::filesystem::permissions(path, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  auto d = load_desired_state(path, "", model::Environment{});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("chmod 600"), std::string::npos) << d.error();
}

std::size_t dynamic_connections(const Config& c) {
  std::size_t n = 0;
  for (const auto& s : c.ipsec_site_connections) n += s.manual_keys ? 0 : 1;
  return n;
}

TEST(DesiredState, EveryExampleLoadsAsTheModel) {
  for (const char* name : {"gw-ike.yaml", "gw-a-static.yaml", "gw-b-static.yaml"}) {
    SCOPED_TRACE(name);
    auto cfg = load_config(example(name));
    ASSERT_TRUE(cfg.ok()) << cfg.error();
    const auto env = gateway_environment(*cfg);
    auto d = load_desired_state(example(name), "", env);
    ASSERT_TRUE(d.ok()) << d.error();
    EXPECT_EQ(d->state.ipsec_site_connections.size(), dynamic_connections(*cfg));
    EXPECT_EQ(d->state.vpnservices.size(), 1u);
    EXPECT_EQ(d->source, "config file " + example(name));
  }
}

TEST(DesiredState, EnvironmentIsTheGateway) {
  auto cfg = load_config(example("gw-ike.yaml"));
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  const auto env = gateway_environment(*cfg);
  EXPECT_EQ(env.router_name, "ipsecgw");
  ASSERT_EQ(env.subnets.size(), 1u);
  EXPECT_EQ(env.subnets[0].name, "protected");
  EXPECT_EQ(env.subnets[0].cidr, dp::format_prefix(cfg->vpnservice.subnet));
  EXPECT_EQ(env.external_v4_ip, dp::format_ipv4(cfg->vpnservice.external_v4_ip));
}

TEST(DesiredState, StateFileWinsWhenItExists) {
  auto cfg = load_config(example("gw-ike.yaml"));
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  const auto env = gateway_environment(*cfg);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ipsecgw-desired-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string state = (dir / "state.yaml").string();
  // Missing: the config file.
  auto d = load_desired_state(example("gw-ike.yaml"), state, env);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_FALSE(d->state.ipsec_site_connections.empty());
  // Saved empty state: it wins, no connections.
  ASSERT_TRUE(model::Store(state).save(model::State{}).ok());
  d = load_desired_state(example("gw-ike.yaml"), state, env);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->state.ipsec_site_connections.empty());
  EXPECT_EQ(d->source, "state file " + state);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsecgw::app
