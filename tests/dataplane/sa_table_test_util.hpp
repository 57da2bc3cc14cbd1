// Helpers shared by test_sa_table, test_spd_batch and test_sa_concurrency.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/api/sa_installer.hpp"
#include "dataplane/sa.hpp"
#include "dataplane/sa_table.hpp"

namespace ipsecgw::dp::testutil {

// A fresh RCU domain and SA installer (tables of `Capacity` SAs) for each test.
template <std::uint32_t Capacity>
class InstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Rcu::create(4);
    ASSERT_TRUE(r) << r.error();
    rcu_ = std::move(*r);
    auto d = DpSaInstaller::create(*rcu_, Capacity);
    ASSERT_TRUE(d) << d.error();
    inst_ = std::move(*d);
  }
  void TearDown() override {
    inst_.reset();
    rcu_.reset();
  }

  std::unique_ptr<Rcu> rcu_;
  std::unique_ptr<DpSaInstaller> inst_;
};

constexpr std::uint32_t kConnMagic = 0x5a000000;

// A key that is a function of the SPI, so a reader can tell a live SA's key schedule from a
// wiped (zeroed) or reused one: AES-128's first round key is the cipher key itself.
inline void key_for(std::uint32_t spi, std::uint8_t out[16]) {
  for (unsigned i = 0; i < 16; ++i)
    out[i] = static_cast<std::uint8_t>((spi >> (8 * (i % 4))) ^ (0xa5 + 17 * i));
}

inline SaSpec make_spec(Direction dir, std::uint32_t spi, Ipv4Prefix local = {0x0a000000, 8},
                        Ipv4Prefix peer = {0xc0a80000, 16}, std::uint32_t conn = 0) {
  SaSpec s;
  s.dir = dir;
  s.spi = spi;
  s.conn_id = conn != 0 ? conn : (spi ^ kConnMagic);
  s.cipher = crypto::CipherAlg::kAes128Cbc;
  s.integ = crypto::IntegAlg::kHmacSha1_96;
  std::uint8_t k[16];
  key_for(spi, k);
  s.enc_key = crypto::SecureBytes(k, 16);
  s.auth_key = crypto::SecureBytes(20);
  for (unsigned i = 0; i < 20; ++i) s.auth_key[i] = static_cast<std::uint8_t>(spi + i);
  s.local_addr = 0xc6336401;  // 198.51.100.1
  s.peer_addr = 0xcb007101;   // 203.0.113.1
  s.local_subnet = local;
  s.peer_subnet = peer;
  return s;
}

// True when `sa` is a live SA for `spi` built by make_spec: identity fields and key schedule.
inline bool sa_is_live(const SaHead* sa, std::uint32_t spi) {
  if (sa == nullptr || sa->spi != spi) return false;
  std::uint8_t k[16];
  key_for(spi, k);
  return std::memcmp(sa->keys.enc_keys(), k, 16) == 0 && sa->keys.cipher_key_bytes == 16 &&
         sa->keys.icv_bytes == 12;
}

// An outbound policy as the tests install it (make_spec), with its SA's SPI.
struct Pol {
  Ipv4Prefix l, p;
  std::uint32_t spi;
};

// The independent reference for outbound lookups: a brute-force scan over `pols` in the
// documented order (longest peer prefix, then longest local prefix). Checks each res[i] (the
// lookup of src[i] -> dst[i]) against it; returns how many lookups matched a policy.
inline unsigned expect_lookups_match_brute_force(const std::vector<Pol>& pols,
                                                 const std::vector<Ipv4>& src,
                                                 const std::vector<Ipv4>& dst,
                                                 const std::vector<OutboundSa*>& res) {
  unsigned hits = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    const Pol* best = nullptr;
    for (const auto& p : pols) {
      if (!p.l.contains(src[i]) || !p.p.contains(dst[i])) continue;
      if (best == nullptr || p.p.len > best->p.len ||
          (p.p.len == best->p.len && p.l.len > best->l.len))
        best = &p;
    }
    if (best == nullptr) {
      EXPECT_EQ(res[i], nullptr) << i;
    } else {
      ++hits;
      EXPECT_NE(res[i], nullptr) << i;
      if (res[i] != nullptr) {
        EXPECT_EQ(res[i]->spi, best->spi) << i;
      }
    }
  }
  return hits;
}

}  // namespace ipsecgw::dp::testutil
