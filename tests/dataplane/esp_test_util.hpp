// Shared helpers for the ESP data-path tests: an mbuf pool fixture, SA specs for every algorithm
// combination, inner packet builders and mbuf <-> bytes conversion.
#pragma once

#include <gtest/gtest.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "crypto/esp_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"

namespace ipsecgw::dp::testutil {

using Bytes = std::vector<std::uint8_t>;

struct Combo {
  crypto::CipherAlg cipher;
  crypto::IntegAlg integ;
};
inline const Combo kCombos[] = {
    {crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96},
    {crypto::CipherAlg::kAes192Cbc, crypto::IntegAlg::kHmacSha1_96},
    {crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha1_96},
    {crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha256_128},
    {crypto::CipherAlg::kAes192Cbc, crypto::IntegAlg::kHmacSha256_128},
    {crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128},
};

inline std::string combo_name(const Combo& c, bool encap) {
  std::string s(crypto::to_string(c.cipher));
  s += "_";
  s += crypto::to_string(c.integ);
  s += encap ? "_udp" : "_esp";
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

constexpr Ipv4 kLocalGw = 0xC0000201;   // 192.0.2.1
constexpr Ipv4 kPeerGw = 0xC6336402;    // 198.51.100.2
constexpr Ipv4 kLocalHost = 0x0A010005; // 10.1.0.5
constexpr Ipv4 kPeerHost = 0x0A020007;  // 10.2.0.7

inline Bytes pattern_key(std::size_t n, std::uint8_t seed) {
  Bytes k(n);
  for (std::size_t i = 0; i < n; ++i) k[i] = static_cast<std::uint8_t>(seed + 7 * i);
  return k;
}

// The spec of one direction. "Outbound" is our side sending to the peer; its twin "inbound" SA
// (same SPI, keys) receives what it sent, as if we were the peer: selectors mirrored so the
// round trip passes (inner src in peer_subnet, dst in local_subnet on the receiving side).
inline SaSpec make_spec(Direction dir, const Combo& c, bool encap, std::uint32_t spi = 0x1234abcd) {
  SaSpec s;
  s.dir = dir;
  s.spi = spi;
  s.conn_id = 7;
  s.cipher = c.cipher;
  s.integ = c.integ;
  Bytes ek = pattern_key(crypto::cipher_key_len(c.cipher), 0x11);
  Bytes ak = pattern_key(crypto::integ_key_len(c.integ), 0x5a);
  s.enc_key = crypto::SecureBytes(ek.data(), ek.size());
  s.auth_key = crypto::SecureBytes(ak.data(), ak.size());
  s.udp_encap = encap;
  s.local_port = 4500;
  s.peer_port = 4500;
  if (dir == Direction::kOutbound) {
    s.local_addr = kLocalGw;
    s.peer_addr = kPeerGw;
    s.local_subnet = {0x0A010000, 16};
    s.peer_subnet = {0x0A020000, 16};
  } else {
    // The receiver of our own packets: the "peer" hosts are 10.1/16, "local" ones 10.2/16.
    s.local_addr = kPeerGw;
    s.peer_addr = kLocalGw;
    s.local_subnet = {0x0A020000, 16};
    s.peer_subnet = {0x0A010000, 16};
  }
  return s;
}

struct SaDeleter {
  void operator()(InboundSa* sa) const noexcept { sa_destroy(sa); }
  void operator()(OutboundSa* sa) const noexcept { sa_destroy(sa); }
};
using InSaPtr = std::unique_ptr<InboundSa, SaDeleter>;
using OutSaPtr = std::unique_ptr<OutboundSa, SaDeleter>;

// S = InboundSa or OutboundSa; the spec's direction must match.
template <class S>
std::unique_ptr<S, SaDeleter> create_sa(const SaSpec& spec) {
  auto r = sa_create<S>(spec);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  return std::unique_ptr<S, SaDeleter>(r.ok() ? r.value() : nullptr);
}

// RFC 1071 checksum, written here independently of DPDK's.
inline std::uint16_t inet_checksum(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// An inner IPv4/UDP packet with `payload` bytes of pattern data.
inline Bytes make_inner(std::size_t payload, Ipv4 src = kLocalHost, Ipv4 dst = kPeerHost,
                        std::uint8_t tos = 0, bool df = false, std::uint8_t seed = 0) {
  Bytes p(20 + payload);
  p[0] = 0x45;
  p[1] = tos;
  p[2] = static_cast<std::uint8_t>(p.size() >> 8);
  p[3] = static_cast<std::uint8_t>(p.size());
  p[4] = 0x12;
  p[5] = 0x34;
  p[6] = df ? 0x40 : 0;
  p[8] = 63;
  p[9] = payload >= 8 ? 17 : 253;  // UDP when it fits, else the experimental protocol
  for (int i = 0; i < 4; ++i) {
    p[12 + i] = static_cast<std::uint8_t>(src >> (24 - 8 * i));
    p[16 + i] = static_cast<std::uint8_t>(dst >> (24 - 8 * i));
  }
  for (std::size_t i = 0; i < payload; ++i) p[20 + i] = static_cast<std::uint8_t>(seed + i * 13);
  if (payload >= 8) {
    p[20] = 0x30; p[21] = 0x39; p[22] = 0x00; p[23] = 0x35;
    p[24] = static_cast<std::uint8_t>(payload >> 8);
    p[25] = static_cast<std::uint8_t>(payload);
    p[26] = p[27] = 0;  // no UDP checksum
  }
  std::uint16_t c = inet_checksum(p.data(), 20);
  p[10] = static_cast<std::uint8_t>(c >> 8);
  p[11] = static_cast<std::uint8_t>(c);
  return p;
}

inline Bytes to_bytes(const rte_mbuf* m) {
  Bytes b(m->pkt_len);
  const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
  if (p != b.data()) std::memcpy(b.data(), p, m->pkt_len);
  return b;
}

inline std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
inline std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
inline void put16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }

// A mempool shared by a test suite, an engine per test.
class EspFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (pool_ == nullptr) {
      pool_ = rte_pktmbuf_pool_create("esp_test_pool", 2047, 0, 0, 2048 + RTE_PKTMBUF_HEADROOM,
                                      SOCKET_ID_ANY);
      ASSERT_NE(pool_, nullptr) << "rte_pktmbuf_pool_create";
    }
  }
  void SetUp() override {
    ASSERT_NE(pool_, nullptr);
    auto e = crypto::EspEngine::create();
    ASSERT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
    engine_ = std::move(e.value());
    base_in_use_ = rte_mempool_in_use_count(pool_);
  }
  void TearDown() override {
    for (rte_mbuf* m : owned_) rte_pktmbuf_free(m);
    owned_.clear();
    EXPECT_EQ(rte_mempool_in_use_count(pool_), base_in_use_) << "mbuf leak";
  }

  // An mbuf holding `b`, freed at the end of the test.
  rte_mbuf* mbuf(const Bytes& b) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    if (m == nullptr) return nullptr;
    char* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(b.size()));
    EXPECT_TRUE(d != nullptr || b.empty());
    if (!b.empty()) std::memcpy(d, b.data(), b.size());
    owned_.push_back(m);
    return m;
  }

  // Encrypts inner packets through `sa`, expecting all to pass; returns the outer packets.
  std::vector<Bytes> encrypt_all(OutboundSa* sa, const std::vector<Bytes>& inners) {
    std::vector<Bytes> out;
    for (std::size_t off = 0; off < inners.size(); off += kMaxBurst) {
      const std::size_t n = std::min<std::size_t>(kMaxBurst, inners.size() - off);
      std::vector<rte_mbuf*> ms;
      std::vector<OutboundSa*> sas(n, sa);
      for (std::size_t i = 0; i < n; ++i) ms.push_back(mbuf(inners[off + i]));
      LcoreStats st;
      auto good = esp_outbound(*engine_, ms, sas, st);
      EXPECT_EQ(good, n);
      for (std::size_t i = 0; i < good; ++i) out.push_back(to_bytes(ms[i]));
    }
    return out;
  }

  // Runs one inbound burst of outer packets (all through `sa`), returns #good; results in `ms`.
  std::uint16_t decrypt_burst(InboundSa* sa, const std::vector<Bytes>& outers, LcoreStats& st,
                              std::vector<rte_mbuf*>& ms) {
    ms.clear();
    for (const auto& b : outers) ms.push_back(mbuf(b));
    std::vector<InboundSa*> sas(ms.size(), sa);
    return esp_inbound(*engine_, ms, sas, st);
  }

  static inline rte_mempool* pool_ = nullptr;
  std::unique_ptr<crypto::EspEngine> engine_;
  std::vector<rte_mbuf*> owned_;
  unsigned base_in_use_ = 0;
};

}  // namespace ipsecgw::dp::testutil
