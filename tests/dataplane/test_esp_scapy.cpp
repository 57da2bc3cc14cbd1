// Interoperability of the ESP data path with an independent implementation: Scapy's
// scapy.layers.ipsec (tests/scapy/esp_ref.py, run with /usr/bin/python3). For every algorithm
// combination, plain ESP and ESP-in-UDP: packets Scapy encrypts are decrypted by ours to the
// exact inner packet, and packets ours encrypts are decrypted (ICV verified) by Scapy to the
// exact inner packet. All packets go through two Python runs (start-up is slow).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/dataplane/esp_test_util.hpp"

#ifndef IPSECGW_SOURCE_DIR
#error "IPSECGW_SOURCE_DIR must be defined by the build"
#endif

namespace ipsecgw::dp {
namespace {

using namespace testutil;
using nlohmann::json;

std::string hex(const Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}
Bytes unhex(const std::string& s) {
  Bytes b(s.size() / 2);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(std::stoul(s.substr(2 * i, 2), nullptr, 16));
  return b;
}

// Runs esp_ref.py on `jobs`; fails the test (not skips) when Python or Scapy is missing.
json run_scapy(const json& jobs) {
  char path[] = "/tmp/ipsecgw_esp_ref_XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  if (fd < 0) return {};
  {
    std::string in = json{{"jobs", jobs}}.dump();
    EXPECT_EQ(write(fd, in.data(), in.size()), static_cast<ssize_t>(in.size()));
    close(fd);
  }
  const std::string cmd = std::string("timeout 300 /usr/bin/python3 ") + IPSECGW_SOURCE_DIR +
                          "/tests/scapy/esp_ref.py < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[65536];
  std::size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = p ? pclose(p) : -1;
  unlink(path);
  json res = json::parse(out, nullptr, false);
  if (rc != 0 || res.is_discarded() || res.contains("fatal") || !res.contains("results")) {
    ADD_FAILURE() << "/usr/bin/python3 with python3-scapy is required for this test (Debian "
                     "package python3-scapy). esp_ref.py exit status "
                  << rc << ", output: " << out.substr(0, 2000);
    return {};
  }
  return res["results"];
}

json job_base(const SaSpec& s, bool encap) {
  return json{{"spi", s.spi},
              {"cipher", std::string(crypto::to_string(s.cipher))},
              {"integ", std::string(crypto::to_string(s.integ))},
              {"enc_key", hex(Bytes(s.enc_key.data(), s.enc_key.data() + s.enc_key.size()))},
              {"auth_key", hex(Bytes(s.auth_key.data(), s.auth_key.data() + s.auth_key.size()))},
              {"encap", encap},
              {"src", "198.51.100.2"},
              {"dst", "192.0.2.1"}};
}

class EspScapy : public EspFixture {};

TEST_F(EspScapy, BothDirectionsInteroperateForAllCombosAndEncapsulations) {
  const std::vector<std::size_t> sizes = {0, 1, 13, 14, 15, 16, 17, 64, 100, 333, 512, 1000, 1400};
  struct Case {
    std::string name;
    bool encap;
    Combo combo;
    OutSaPtr out_sa;
    InSaPtr in_sa;
    std::vector<Bytes> inners;
  };
  std::vector<Case> cases;
  for (int c = 0; c < 6; ++c) {
    for (bool encap : {false, true}) {
      Case k{combo_name(kCombos[c], encap), encap, kCombos[c], nullptr, nullptr, {}};
      SaSpec out_spec = make_spec(Direction::kOutbound, kCombos[c], encap, 0x10000 + c * 2 + encap);
      out_spec.mtu = 1600;
      k.out_sa = create_sa<OutboundSa>(out_spec);
      k.in_sa = create_sa<InboundSa>(make_spec(Direction::kInbound, kCombos[c], encap, 0x10000 + c * 2 + encap));
      ASSERT_TRUE(k.out_sa && k.in_sa);
      for (std::size_t i = 0; i < sizes.size(); ++i)
        k.inners.push_back(make_inner(sizes[i], kLocalHost + static_cast<Ipv4>(i), kPeerHost,
                                      static_cast<std::uint8_t>(4 * i), i % 2,
                                      static_cast<std::uint8_t>(c * 31 + i)));
      cases.push_back(std::move(k));
    }
  }

  // Scapy -> ours.
  json enc_jobs = json::array();
  for (const auto& k : cases) {
    SaSpec s = make_spec(Direction::kOutbound, k.combo, k.encap, k.in_sa->spi);
    for (std::size_t i = 0; i < k.inners.size(); ++i) {
      json j = job_base(s, k.encap);
      j["op"] = "encrypt";
      j["seq"] = i + 1;
      j["packet"] = hex(k.inners[i]);
      enc_jobs.push_back(j);
    }
  }
  json enc_res = run_scapy(enc_jobs);
  ASSERT_EQ(enc_res.size(), enc_jobs.size());
  std::size_t r = 0;
  std::size_t checked = 0;
  for (auto& k : cases) {
    SCOPED_TRACE("scapy -> ours, " + k.name);
    std::vector<Bytes> outers;
    for (std::size_t i = 0; i < k.inners.size(); ++i, ++r) {
      ASSERT_TRUE(enc_res[r].contains("packet")) << enc_res[r].dump();
      outers.push_back(unhex(enc_res[r]["packet"].get<std::string>()));
      EXPECT_EQ(outers.back()[9], k.encap ? 17 : 50);
    }
    LcoreStats st;
    std::vector<rte_mbuf*> ms;
    ASSERT_EQ(decrypt_burst(k.in_sa.get(), outers, st, ms), outers.size());
    for (std::size_t i = 0; i < ms.size(); ++i, ++checked)
      EXPECT_EQ(to_bytes(ms[i]), k.inners[i]) << "packet " << i;
  }

  // Ours -> Scapy.
  json dec_jobs = json::array();
  for (auto& k : cases) {
    SaSpec s = make_spec(Direction::kOutbound, k.combo, k.encap, k.out_sa->spi);
    auto outers = encrypt_all(k.out_sa.get(), k.inners);
    ASSERT_EQ(outers.size(), k.inners.size());
    for (const auto& o : outers) {
      json j = job_base(s, k.encap);
      j["op"] = "decrypt";
      j["packet"] = hex(o);
      dec_jobs.push_back(j);
    }
  }
  json dec_res = run_scapy(dec_jobs);
  ASSERT_EQ(dec_res.size(), dec_jobs.size());
  r = 0;
  for (auto& k : cases) {
    SCOPED_TRACE("ours -> scapy, " + k.name);
    for (std::size_t i = 0; i < k.inners.size(); ++i, ++r, ++checked) {
      ASSERT_TRUE(dec_res[r].contains("packet")) << "packet " << i << ": " << dec_res[r].dump();
      EXPECT_EQ(unhex(dec_res[r]["packet"].get<std::string>()), k.inners[i]) << "packet " << i;
    }
  }
  EXPECT_EQ(checked, 2 * 12 * sizes.size());
}

// A whole burst (kMaxBurst: the workers' RX burst, the length of one ipsec-mb cipher call and
// one hash call) in one esp_outbound call and one esp_inbound call, the SA changing with every
// packet over all six combinations, plain and UDP: Scapy decrypts each of ours (ICV verified),
// ours decrypts each of Scapy's.
TEST_F(EspScapy, AWholeBurstOverTwelveSasBothWays) {
  constexpr unsigned kSas = 12;
  std::vector<OutSaPtr> outs;
  std::vector<InSaPtr> ins;
  std::vector<json> out_base, in_base;  // what Scapy is given: keys, SPI, encapsulation
  for (unsigned k = 0; k < kSas; ++k) {
    const Combo& combo = kCombos[k / 2];
    const bool encap = k % 2 == 1;
    SaSpec o = make_spec(Direction::kOutbound, combo, encap, 0x20000 + k);
    o.mtu = 1600;
    outs.push_back(create_sa<OutboundSa>(o));
    ins.push_back(create_sa<InboundSa>(make_spec(Direction::kInbound, combo, encap, 0x30000 + k)));
    ASSERT_TRUE(outs.back() && ins.back());
    out_base.push_back(job_base(o, encap));
    in_base.push_back(job_base(make_spec(Direction::kOutbound, combo, encap, 0x30000 + k), encap));
  }
  std::vector<Bytes> inners;
  std::vector<rte_mbuf*> ms;
  std::vector<OutboundSa*> sas;
  for (unsigned i = 0; i < kMaxBurst; ++i) {
    inners.push_back(make_inner(i * 11 % 1400, kLocalHost + i, kPeerHost, 0, false,
                                static_cast<std::uint8_t>(i)));
    ms.push_back(mbuf(inners.back()));
    sas.push_back(outs[i % kSas].get());
  }
  LcoreStats st;
  ASSERT_EQ(esp_outbound(*engine_, ms, sas, st), kMaxBurst);
  json dec_jobs = json::array();
  for (unsigned i = 0; i < kMaxBurst; ++i) {
    const Bytes o = to_bytes(ms[i]);
    const std::size_t esp = 20 + (i % 2 == 1 ? 8 : 0);
    EXPECT_EQ(be32(o.data() + esp + 4), i / kSas + 1) << "sequence number of packet " << i;
    json j = out_base[i % kSas];
    j["op"] = "decrypt";
    j["packet"] = hex(o);
    dec_jobs.push_back(j);
  }
  json enc_jobs = json::array();
  for (unsigned i = 0; i < kMaxBurst; ++i) {
    json j = in_base[i % kSas];
    j["op"] = "encrypt";
    j["seq"] = i / kSas + 1;
    j["packet"] = hex(inners[i]);
    enc_jobs.push_back(j);
  }
  const json dec_res = run_scapy(dec_jobs);
  ASSERT_EQ(dec_res.size(), kMaxBurst);
  for (unsigned i = 0; i < kMaxBurst; ++i) {
    ASSERT_TRUE(dec_res[i].contains("packet")) << "packet " << i << ": " << dec_res[i].dump();
    EXPECT_EQ(unhex(dec_res[i]["packet"].get<std::string>()), inners[i]) << "packet " << i;
  }
  const json enc_res = run_scapy(enc_jobs);
  ASSERT_EQ(enc_res.size(), kMaxBurst);
  std::vector<rte_mbuf*> back;
  std::vector<InboundSa*> in_sas;
  for (unsigned i = 0; i < kMaxBurst; ++i) {
    ASSERT_TRUE(enc_res[i].contains("packet")) << enc_res[i].dump();
    back.push_back(mbuf(unhex(enc_res[i]["packet"].get<std::string>())));
    in_sas.push_back(ins[i % kSas].get());
  }
  LcoreStats in_st;
  ASSERT_EQ(esp_inbound(*engine_, back, in_sas, in_st), kMaxBurst);
  for (unsigned i = 0; i < kMaxBurst; ++i)
    EXPECT_EQ(to_bytes(back[i]), inners[i]) << "packet " << i;
}

TEST_F(EspScapy, ScapyRejectsOurPacketWithFlippedIcvBit) {
  // Guards the cross-check itself: Scapy really verifies the ICV of what we send.
  auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false));
  Bytes o = encrypt_all(sa.get(), {make_inner(50)})[0];
  o.back() ^= 1;
  json j = job_base(make_spec(Direction::kOutbound, kCombos[0], false), false);
  j["op"] = "decrypt";
  j["packet"] = hex(o);
  json res = run_scapy(json::array({j}));
  ASSERT_EQ(res.size(), 1u);
  EXPECT_TRUE(res[0].contains("error")) << res[0].dump();
}

}  // namespace
}  // namespace ipsecgw::dp
