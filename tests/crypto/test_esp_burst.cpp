// Long mixed bursts through EspEngine on both ipsec-mb APIs (EngineApi::kBurst, the synchronous
// cipher/hash burst API in chunks of at most 128 ops, and EngineApi::kJob), checked against
// OpenSSL as an independent implementation:
//   - hundreds of ops per burst, in runs of one algorithm pair long enough to cross the
//     128-op chunk boundary, all six pairs, several SAs per pair, payloads from 16 to 1,504
//     bytes, and runs of key schedules on the generic engine path (the job-API fallback of the
//     burst engine) between them; on every ipsec-mb code path the CPU has (SSE ... AVX-512);
//   - outbound: ciphertext and truncated ICV equal OpenSSL's AES-CBC and HMAC;
//   - inbound, on packets built by OpenSSL alone: about one op in five has a corrupted ICV or
//     ciphertext; those are kBadIcv (on the burst API's fixed paths with every byte exactly as
//     received: never decrypted), the others kOk with OpenSSL's plaintext.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "crypto/esp_crypto.hpp"
#include "tests/crypto/openssl_ref.hpp"

namespace ipsecgw::crypto {
namespace {

using namespace test;  // Bytes, Sa, random_bytes, the OpenSSL references

constexpr std::uint32_t kHdr = 8;
constexpr std::uint32_t kCipherOff = kHdr + kMaxEspIvLen;

// One ESP-shaped buffer: SPI|seq (8) | IV (16) | payload | ICV.
struct Pkt {
  const Sa* sa;
  Bytes plain;   // the payload in clear
  Bytes buf;     // what the engine is given
  bool corrupt;  // inbound: ICV or ciphertext altered after OpenSSL built the packet
  EspCryptoOp op() {
    EspCryptoOp o;
    o.ks = &sa->ks;
    o.data = buf.data();
    o.cipher_offset = kCipherOff;
    o.cipher_len = static_cast<std::uint32_t>(plain.size());
    o.auth_len = kCipherOff + o.cipher_len;
    o.iv = buf.data() + kHdr;
    o.icv = buf.data() + o.auth_len;
    o.status = OpStatus::kCryptoError;
    return o;
  }
};

struct Fixture {
  std::mt19937_64 rng{20261203};
  std::vector<std::unique_ptr<Sa>> sas;  // per pair: two on a fixed path, one on the generic
  Fixture() {
    for (auto c : {CipherAlg::kAes128Cbc, CipherAlg::kAes192Cbc, CipherAlg::kAes256Cbc}) {
      for (auto a : {IntegAlg::kHmacSha1_96, IntegAlg::kHmacSha256_128}) {
        for (int k = 0; k < 3; ++k) {
          auto sa = std::make_unique<Sa>();
          sa->c = c;
          sa->a = a;
          sa->ekey = random_bytes(rng, cipher_key_len(c));
          sa->akey = random_bytes(rng, integ_key_len(a));
          auto r = make_key_schedule(sa->ks, c, sa->ekey, a, sa->akey,
                                     k == 0 ? KeyUse::kDecrypt : KeyUse::kEncrypt);
          EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
          EXPECT_NE(sa->ks.engine_path, EspKeySchedule::kGenericEnginePath);
          // The generic path: the burst engine's job-API fallback (same parameters, from `alg`).
          if (k == 2) sa->ks.engine_path = EspKeySchedule::kGenericEnginePath;
          sas.push_back(std::move(sa));
        }
      }
    }
  }

  // `n` packets in runs: each run one algorithm pair, 1 to 200 ops long (so runs cross the
  // 128-op chunk boundary), its ops spread over that pair's SAs; one run in four on the
  // generic path only. Inbound packets are built entirely with OpenSSL, about one in five then
  // corrupted (a flipped bit in the ICV or in the ciphertext).
  std::vector<Pkt> burst(std::size_t n, bool inbound) {
    std::vector<Pkt> pkts;
    while (pkts.size() < n) {
      const std::size_t pair = rng() % 6;
      const bool generic = rng() % 4 == 0;
      const std::size_t run = std::min<std::size_t>(n - pkts.size(), 1 + rng() % 200);
      for (std::size_t i = 0; i < run; ++i) {
        const Sa* sa = sas[pair * 3 + (generic ? 2 : rng() % 2)].get();
        // Mostly short, some long: multi-buffer lanes finish out of submission order.
        const std::size_t len = rng() % 3 == 0 ? 16 * (60 + rng() % 35) : 16 * (1 + rng() % 6);
        Pkt p{sa, random_bytes(rng, len), random_bytes(rng, kCipherOff), false};
        if (inbound) {
          const Bytes ct = ossl_cbc(sa->c, sa->ekey, p.buf.data() + kHdr, p.plain, true);
          p.buf.insert(p.buf.end(), ct.begin(), ct.end());
          const Bytes icv = ossl_icv(sa->a, sa->akey, p.buf.data(), p.buf.size());
          p.buf.insert(p.buf.end(), icv.begin(), icv.end());
          if (rng() % 5 == 0) {
            p.corrupt = true;
            const std::size_t at = rng() % 2 == 0 ? p.buf.size() - 1 - rng() % icv.size()
                                                  : kCipherOff + rng() % len;
            p.buf[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
          }
        } else {
          p.buf.insert(p.buf.end(), p.plain.begin(), p.plain.end());
          p.buf.resize(p.buf.size() + icv_len(sa->a), 0);
        }
        pkts.push_back(std::move(p));
      }
    }
    return pkts;
  }
};

struct Case {
  EngineApi api;
  bool validated;  // encrypt_validated/decrypt_validated (the data path's entry points)
};

class EspLongBursts : public ::testing::TestWithParam<Case> {
 protected:
  // One engine per ipsec-mb code path the CPU has (each has its own burst functions).
  std::vector<std::unique_ptr<EspEngine>> engines;
  void SetUp() override {
    for (Arch arch : {Arch::kSse, Arch::kAvx, Arch::kAvx2, Arch::kAvx512}) {
      auto r = EspEngine::create(arch, GetParam().api);
      if (!r.ok()) continue;  // CPU lacks it
      ASSERT_EQ(r.value()->api(), GetParam().api);
      engines.push_back(std::move(r).value());
    }
    ASSERT_FALSE(engines.empty());
  }
  void run(EspEngine& eng, std::vector<EspCryptoOp>& ops, bool decrypt) {
    const bool v = GetParam().validated;
    if (decrypt) v ? eng.decrypt_validated(ops) : eng.decrypt(ops);
    else v ? eng.encrypt_validated(ops) : eng.encrypt(ops);
  }
};

constexpr std::array<std::size_t, 5> kBurstSizes = {129, 256, 300, 383, 700};

TEST_P(EspLongBursts, OutboundMatchesOpenSsl) {
  Fixture f;
  for (auto& eng : engines) {
    for (std::size_t n : kBurstSizes) {
      SCOPED_TRACE(std::string(eng->arch_name()) + ", burst of " + std::to_string(n));
      std::vector<Pkt> pkts = f.burst(n, /*inbound=*/false);
      std::vector<EspCryptoOp> ops;
      for (auto& p : pkts) ops.push_back(p.op());
      run(*eng, ops, /*decrypt=*/false);
      for (std::size_t i = 0; i < n; ++i) {
        const Pkt& p = pkts[i];
        ASSERT_EQ(ops[i].status, OpStatus::kOk) << "op " << i;
        const Bytes ct = ossl_cbc(p.sa->c, p.sa->ekey, p.buf.data() + kHdr, p.plain, true);
        ASSERT_TRUE(std::equal(ct.begin(), ct.end(), p.buf.begin() + kCipherOff)) << "op " << i;
        const Bytes icv = ossl_icv(p.sa->a, p.sa->akey, p.buf.data(), ops[i].auth_len);
        ASSERT_TRUE(std::equal(icv.begin(), icv.end(), p.buf.begin() + ops[i].auth_len))
            << "op " << i;
      }
    }
  }
}

TEST_P(EspLongBursts, InboundVerifiesThenDecryptsOnlyVerifiedOps) {
  Fixture f;
  std::size_t corrupt = 0, kept = 0;
  for (auto& eng : engines) {
    for (std::size_t n : kBurstSizes) {
      SCOPED_TRACE(std::string(eng->arch_name()) + ", burst of " + std::to_string(n));
      std::vector<Pkt> pkts = f.burst(n, /*inbound=*/true);
      std::vector<Bytes> received;
      std::vector<EspCryptoOp> ops;
      for (auto& p : pkts) {
        received.push_back(p.buf);
        ops.push_back(p.op());
      }
      run(*eng, ops, /*decrypt=*/true);
      for (std::size_t i = 0; i < n; ++i) {
        const Pkt& p = pkts[i];
        if (p.corrupt) {
          ++corrupt;
          ASSERT_EQ(ops[i].status, OpStatus::kBadIcv) << "op " << i;
          // The burst API decrypts verified ops only. The job API chains hash and cipher, so it
          // decrypts every op (the caller must not read a bad op's data, RFC 4303 §3.4.4.1).
          if (GetParam().api == EngineApi::kBurst &&
              p.sa->ks.engine_path != EspKeySchedule::kGenericEnginePath) {
            ++kept;
            ASSERT_EQ(p.buf, received[i]) << "op " << i << ": bad op's data changed";
          }
        } else {
          ASSERT_EQ(ops[i].status, OpStatus::kOk) << "op " << i;
          ASSERT_TRUE(std::equal(p.plain.begin(), p.plain.end(), p.buf.begin() + kCipherOff))
              << "op " << i;
          ASSERT_TRUE(std::equal(p.buf.begin(), p.buf.begin() + kCipherOff, received[i].begin()))
              << "op " << i << ": header or IV changed";
        }
      }
    }
  }
  EXPECT_GT(corrupt, 100u);  // the corruption is really exercised
  if (GetParam().api == EngineApi::kBurst) {
    EXPECT_GT(kept, 50u);
  }
}

INSTANTIATE_TEST_SUITE_P(Apis, EspLongBursts,
                         ::testing::Values(Case{EngineApi::kBurst, false},
                                           Case{EngineApi::kBurst, true},
                                           Case{EngineApi::kJob, false},
                                           Case{EngineApi::kJob, true}),
                         [](const auto& info) {
                           return std::string(info.param.api == EngineApi::kBurst ? "Burst"
                                                                                  : "Job") +
                                  (info.param.validated ? "Validated" : "Checked");
                         });

TEST(EspEngineApi, BurstIsTheDefault) {
  auto r = EspEngine::create();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()->api(), EngineApi::kBurst);
}

}  // namespace
}  // namespace ipsecgw::crypto
