// /ipsecgw/connections and /ipsecgw/connection (app/telemetry.cpp) over DPDK's own telemetry
// socket, as scripts/telemetry asks them: with 200 connections (long names, reasons and errors)
// every reply fits DPDK's 16 KiB and keeps every column, the pages (START parameter, `next`)
// list every connection exactly once, and /ipsecgw/connection,NAME gives each one's fields;
// rows changed, removed and added in the table (ConnTable::apply) show in both.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/telemetry.hpp"

namespace ipsecgw::app {
namespace {

struct Reply {
  std::size_t bytes = 0;
  nlohmann::json json;
};

// dpdk-telemetry.py's protocol: a SOCK_SEQPACKET unix socket in the runtime directory; the
// server greets with a JSON line, then answers each command with {"<cmd>": <data>}, <cmd>
// without its parameter.
Reply query(const std::string& cmd) {
  const std::string path = std::string(rte_eal_get_runtime_dir()) + "/dpdk_telemetry.v2";
  Reply r;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd < 0) return r;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<char> buf(1 << 17);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      recv(fd, buf.data(), buf.size(), 0) > 0 && send(fd, cmd.data(), cmd.size(), 0) > 0) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) {
      r.bytes = static_cast<std::size_t>(n);
      r.json = nlohmann::json::parse(std::string(buf.data(), r.bytes), nullptr, false);
    }
  }
  close(fd);
  return r;
}

const char* const kStringColumns[] = {"name",           "peer",       "state",         "reason",
                                      "phase1",         "phase2",     "ike_algorithms",
                                      "esp_algorithms", "last_error", "last_error_at",
                                      "last_rekey_at"};
const char* const kU64Columns[] = {"spi_in",     "spi_out",  "udp_encap",   "peer_port",
                                   "in_packets", "in_bytes", "out_packets", "out_bytes"};

ConnRow row(int i) {
  ConnRow r;
  char name[96];
  std::snprintf(name, sizeof name, "site-connection-to-a-branch-office-with-a-long-name-%03d", i);
  r.name = name;
  r.peer = "198.51." + std::to_string(100 + i / 250) + "." + std::to_string(i % 250 + 1);
  r.state = i % 3 ? "ACTIVE" : "ERROR";
  r.reason = i % 3 ? "" : "peer did not answer Main Mode (3 retransmissions)";
  r.spi_in = 0xc0000000u + static_cast<std::uint32_t>(i);
  r.spi_out = 0xd0000000u + static_cast<std::uint32_t>(i);
  r.udp_encap = i % 2;
  r.phase1 = "ESTABLISHED";
  r.phase2 = "INSTALLED";
  r.ike_algorithms = "aes-256-cbc/hmac-sha2-256/modp2048";
  r.esp_algorithms = "aes-256-gcm-16";
  r.peer_port = static_cast<std::uint16_t>(i % 2 ? 4500 : 500);
  r.last_error = "peer's Delete: \"ISAKMP SA\" \\ tunnel ended";
  r.last_error_at = "2026-12-02T14:00:00Z";
  r.last_rekey_at = "2026-12-02T14:05:00Z";
  r.in_packets = 1000000u + static_cast<std::uint64_t>(i);
  r.in_bytes = 1400000000000ull + static_cast<std::uint64_t>(i);
  r.out_packets = 2000000u + static_cast<std::uint64_t>(i);
  r.out_bytes = 2800000000000ull + static_cast<std::uint64_t>(i);
  return r;
}

class TelemetryConnections : public ::testing::Test {
 protected:
  static constexpr int kConns = 200;
  void SetUp() override {
    register_telemetry();
    RowChanges all;
    for (int i = 0; i < kConns; ++i) all.rows.emplace_back(static_cast<RowKey>(i), row(i));
    connection_table().replace(std::move(all));
  }
  void TearDown() override { connection_table().clear(); }
};

TEST_F(TelemetryConnections, PagesListEveryConnectionWithEveryColumn) {
  std::map<std::string, int> seen;
  std::size_t start = 0;
  int pages = 0;
  for (;;) {
    const std::string cmd = "/ipsecgw/connections" + (start ? "," + std::to_string(start) : "");
    const Reply r = query(cmd);
    ASSERT_TRUE(r.json.contains("/ipsecgw/connections"))
        << r.bytes << " bytes: " << r.json.dump().substr(0, 300);
    ASSERT_LE(r.bytes, 16384u);
    const auto& d = r.json["/ipsecgw/connections"];
    ASSERT_TRUE(d.is_object()) << d.dump().substr(0, 300);
    const std::size_t count = d.value("count", 0u);
    ASSERT_GT(count, 0u);
    // Every column, as long as the others (DPDK leaves out those that do not fit).
    for (const char* c : kStringColumns) {
      ASSERT_TRUE(d.contains(c)) << cmd << ": no column " << c << " (" << count << " rows)";
      ASSERT_EQ(d[c].size(), count) << cmd << " column " << c;
    }
    for (const char* c : kU64Columns) {
      ASSERT_TRUE(d.contains(c)) << cmd << ": no column " << c << " (" << count << " rows)";
      ASSERT_EQ(d[c].size(), count) << cmd << " column " << c;
    }
    EXPECT_EQ(d.value("total", 0), kConns);
    EXPECT_EQ(d.value("start", ~0u), start);
    for (std::size_t k = 0; k < count; ++k) {
      const int i = static_cast<int>(start + k);
      const ConnRow want = row(i);
      EXPECT_EQ(d["name"][k], want.name);
      EXPECT_EQ(d["reason"][k], want.reason);
      EXPECT_EQ(d["last_error"][k], want.last_error);
      EXPECT_EQ(d["spi_out"][k], want.spi_out);
      EXPECT_EQ(d["out_bytes"][k], want.out_bytes);
      ++seen[d["name"][k].get<std::string>()];
    }
    ++pages;
    if (!d.contains("next")) {
      EXPECT_EQ(start + count, static_cast<std::size_t>(kConns));
      break;
    }
    ASSERT_EQ(d["next"], start + count);
    start = d["next"];
    ASSERT_LT(pages, kConns) << "pages do not advance";
  }
  EXPECT_GT(pages, 1);
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kConns));
  for (const auto& [name, n] : seen) EXPECT_EQ(n, 1) << name;
}

TEST_F(TelemetryConnections, OneConnectionByName) {
  for (int i = 0; i < kConns; ++i) {
    const ConnRow want = row(i);
    const std::string cmd = "/ipsecgw/connection," + want.name;
    const Reply r = query(cmd);
    ASSERT_TRUE(r.json.contains("/ipsecgw/connection")) << r.json.dump().substr(0, 300);
    const auto& d = r.json["/ipsecgw/connection"];
    ASSERT_TRUE(d.is_object() && d.contains("name") && d.contains("out_packets")) << d.dump();
    EXPECT_EQ(d["name"], want.name);
    EXPECT_EQ(d["peer"], want.peer);
    EXPECT_EQ(d["state"], want.state);
    EXPECT_EQ(d["reason"], want.reason);
    EXPECT_EQ(d["phase2"], want.phase2);
    EXPECT_EQ(d["esp_algorithms"], want.esp_algorithms);
    EXPECT_EQ(d["last_error"], want.last_error);
    EXPECT_EQ(d["last_rekey_at"], want.last_rekey_at);
    EXPECT_EQ(d["spi_in"], want.spi_in);
    EXPECT_EQ(d["udp_encap"], want.udp_encap ? 1 : 0);
    EXPECT_EQ(d["peer_port"], want.peer_port);
    EXPECT_EQ(d["in_bytes"], want.in_bytes);
    EXPECT_EQ(d["out_packets"], want.out_packets);
  }
  for (const std::string cmd : {"/ipsecgw/connection,no-such-connection", "/ipsecgw/connection"}) {
    const Reply r = query(cmd);
    ASSERT_TRUE(r.json.contains("/ipsecgw/connection")) << r.json.dump();
    EXPECT_TRUE(r.json["/ipsecgw/connection"].contains("error")) << r.json.dump();
  }
  // A START that is no number: DPDK's null reply for an invalid parameter.
  const Reply bad = query("/ipsecgw/connections,x");
  ASSERT_TRUE(bad.json.contains("/ipsecgw/connections")) << bad.json.dump();
  EXPECT_TRUE(bad.json["/ipsecgw/connections"].is_null()) << bad.json.dump();
}

// What the control lcore writes after a refresh (ConnectionStatus::publish): a changed row, a
// removed one, a new one at the end.
TEST_F(TelemetryConnections, ChangedRemovedAndAddedRowsShow) {
  ConnRow changed = row(5);
  changed.state = "DOWN";
  changed.reason = "dead peer detected (DPD)";
  ConnRow added = row(kConns);
  RowChanges ch;
  ch.rows.emplace_back(5, changed);
  ch.rows.emplace_back(1000, added);
  ch.removed.push_back(7);
  connection_table().apply(std::move(ch));

  Reply r = query("/ipsecgw/connection," + row(5).name);
  ASSERT_TRUE(r.json.contains("/ipsecgw/connection")) << r.json.dump().substr(0, 300);
  EXPECT_EQ(r.json["/ipsecgw/connection"]["state"], "DOWN");
  EXPECT_EQ(r.json["/ipsecgw/connection"]["reason"], changed.reason);
  r = query("/ipsecgw/connection," + row(7).name);
  EXPECT_TRUE(r.json["/ipsecgw/connection"].contains("error")) << r.json.dump();
  r = query("/ipsecgw/connection," + added.name);
  EXPECT_EQ(r.json["/ipsecgw/connection"]["name"], added.name) << r.json.dump();

  // The pages: row 7 gone (those after it one place up), the new row last.
  std::vector<std::string> names;
  std::size_t start = 0;
  for (int pages = 0; pages < kConns; ++pages) {
    r = query("/ipsecgw/connections," + std::to_string(start));
    const auto& d = r.json["/ipsecgw/connections"];
    ASSERT_TRUE(d.is_object()) << r.json.dump().substr(0, 300);
    EXPECT_EQ(d.value("total", 0), kConns);
    for (const auto& n : d["name"]) names.push_back(n.get<std::string>());
    if (!d.contains("next")) break;
    start = d["next"];
  }
  ASSERT_EQ(names.size(), static_cast<std::size_t>(kConns));
  EXPECT_EQ(names[5], row(5).name);
  EXPECT_EQ(names[7], row(8).name);
  EXPECT_EQ(names.back(), added.name);
}

}  // namespace
}  // namespace ipsecgw::app
