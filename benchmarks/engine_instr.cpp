// Instructions per packet of EspEngine alone (engine + ipsec-mb), for callgrind: no DPDK, no
// Google Benchmark, deterministic. Bursts of 32 ESP-shaped buffers laid out exactly like
// RawIpsecMb's (benchmarks/raw_crypto.hpp: SPI|seq, IV, round_up(len + 2, 16) ciphertext, ICV),
// aes128-sha1 by default, so engine and raw baseline do the same crypto work:
//
//   engine_instr ours|raw encrypt|decrypt burst|job LEN ITERATIONS [aes256-sha256]
//
// Only `measured` (ITERATIONS bursts) is meant to be collected:
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' ...
// Ir / (ITERATIONS x 128) = instructions per packet. Inbound buffers are valid ESP (encrypted
// once before), copied back fresh before each burst outside `measured`, so every ICV verifies
// and every op is decrypted. Exits non-zero if any op or job failed.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/raw_crypto.hpp"
#include "crypto/esp_crypto.hpp"

using namespace ipsecgw;

namespace {

constexpr std::size_t kBurst = bench::kGatewayBurst;

struct Ours {
  std::unique_ptr<crypto::EspEngine> eng;
  crypto::EspKeySchedule ks;
  std::vector<std::uint8_t> buf, fresh;
  std::vector<crypto::EspCryptoOp> ops;
};

__attribute__((noinline)) std::size_t measured(Ours* o, bench::RawIpsecMb* r, bool dec) {
  if (r != nullptr) return dec ? r->decrypt_burst() : r->encrypt_burst();
  if (dec) o->eng->decrypt_validated(o->ops);
  else o->eng->encrypt_validated(o->ops);
  std::size_t ok = 0;
  for (const auto& op : o->ops) ok += op.status == crypto::OpStatus::kOk;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: %s ours|raw encrypt|decrypt burst|job LEN ITERATIONS [aes256-sha256]\n",
                 argv[0]);
    return 2;
  }
  const bool raw = std::string(argv[1]) == "raw";
  const bool dec = std::string(argv[2]) == "decrypt";
  const bool job = std::string(argv[3]) == "job";
  const std::size_t len = std::strtoul(argv[4], nullptr, 10);
  const long iters = std::strtol(argv[5], nullptr, 10);
  const bool big = argc > 6 && std::string(argv[6]) == "aes256-sha256";
  const auto c = big ? crypto::CipherAlg::kAes256Cbc : crypto::CipherAlg::kAes128Cbc;
  const auto a = big ? crypto::IntegAlg::kHmacSha256_128 : crypto::IntegAlg::kHmacSha1_96;

  std::size_t bad = 0;
  if (raw) {
    bench::RawIpsecMb r(c, a, len, kBurst, job ? bench::RawApi::kJob : bench::RawApi::kBurst);
    for (long i = 0; i < iters; ++i) bad += kBurst - measured(nullptr, &r, dec);
  } else {
    Ours o;
    auto e = crypto::EspEngine::create(bench::bench_arch(),
                                       job ? crypto::EngineApi::kJob : crypto::EngineApi::kBurst);
    if (!e) return 1;
    o.eng = std::move(e).value();
    std::vector<std::uint8_t> ek(crypto::cipher_key_len(c), 0x42);
    std::vector<std::uint8_t> ak(crypto::integ_key_len(a), 0x24);
    if (!crypto::make_key_schedule(o.ks, c, ek, a, ak, dec ? crypto::KeyUse::kDecrypt
                                                          : crypto::KeyUse::kEncrypt))
      return 1;
    const std::size_t cl = bench::esp_cipher_len(len), hdr = bench::RawIpsecMb::kHdr;
    const std::size_t stride = (hdr + cl + 32 + 63) / 64 * 64;
    o.buf.assign(stride * kBurst + 64, 0);
    for (std::size_t i = 0; i < o.buf.size(); ++i) {
      o.buf[i] = static_cast<std::uint8_t>(i * 131 + 7);
    }
    const auto mis = reinterpret_cast<std::uintptr_t>(o.buf.data()) % 64;
    std::uint8_t* base = o.buf.data() + (64 - mis) % 64;
    for (std::size_t i = 0; i < kBurst; ++i) {
      std::uint8_t* p = base + i * stride;
      crypto::EspCryptoOp op;
      op.ks = &o.ks;
      op.data = p;
      op.cipher_offset = static_cast<std::uint32_t>(hdr);
      op.cipher_len = static_cast<std::uint32_t>(cl);
      op.auth_len = static_cast<std::uint32_t>(hdr + cl);
      op.iv = p + 8;
      op.icv = p + hdr + cl;
      o.ops.push_back(op);
    }
    if (dec) {  // valid ESP to decrypt: encrypt once, keep the result
      o.eng->encrypt(o.ops);
      o.fresh = o.buf;
    }
    for (long i = 0; i < iters; ++i) {
      if (dec) std::memcpy(o.buf.data(), o.fresh.data(), o.buf.size());
      bad += kBurst - measured(&o, nullptr, dec);
    }
  }
  std::printf("%s %s %s len=%zu bursts=%ld failed=%zu\n", argv[1], argv[2], argv[3], len, iters,
              bad);
  return bad == 0 ? 0 : 1;
}
