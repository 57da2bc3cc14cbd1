// ESP data path per burst of 32 (dataplane/esp.hpp), to compare with BM_RawIpsecMb (the same
// AES-CBC + HMAC work submitted straight to ipsec-mb, in place, no copies).
//
//   BM_EspOutbound/<combo>/<len>   esp_outbound on 32 inner packets of <len> bytes
//   BM_EspInbound/<combo>/<len>    esp_inbound on 32 outer packets carrying <len>-byte inners
//   BM_EspInboundPrep/<len>        only the per-iteration re-preparation BM_EspInbound does
//
// Fairness (how packets are re-used between iterations):
//  - Outbound re-encrypts in place like the raw baseline: each iteration only resets the mbuf
//    offsets/lengths and rewrites the 20-byte inner IPv4 header (the payload left from the last
//    round is ciphertext, which costs the same to encrypt). No payload copy on either side.
//  - Inbound must start from a valid ciphertext every time (decryption is in place), so each
//    iteration copies the template outer packet into each mbuf and empties the replay window, as
//    if RX delivered fresh packets. That copy is measured on its own in BM_EspInboundPrep/<len>;
//    subtract it for the ESP-only cost. Timing is never paused (PauseTiming costs more than the
//    copy and adds noise).
// items = packets, bytes = inner packet bytes.
#include <benchmark/benchmark.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstring>
#include <string>
#include <vector>

#include "benchmarks/raw_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"

namespace ipsecgw::bench {
namespace {

using namespace ipsecgw::dp;

constexpr unsigned kBurst = 32;

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("bench_esp_pool", 1023, 0, 0,
                                                  2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  return p;
}

SaSpec spec(Direction dir, crypto::CipherAlg c, crypto::IntegAlg a) {
  SaSpec s;
  s.dir = dir;
  s.spi = 0x1000;
  s.cipher = c;
  s.integ = a;
  std::vector<std::uint8_t> ek(crypto::cipher_key_len(c), 0x42), ak(crypto::integ_key_len(a), 0x24);
  s.enc_key = crypto::SecureBytes(ek.data(), ek.size());
  s.auth_key = crypto::SecureBytes(ak.data(), ak.size());
  s.local_addr = dir == Direction::kOutbound ? 0xC0000201 : 0xC6336402;
  s.peer_addr = dir == Direction::kOutbound ? 0xC6336402 : 0xC0000201;
  s.local_subnet = dir == Direction::kOutbound ? Ipv4Prefix{0x0A010000, 16} : Ipv4Prefix{0x0A020000, 16};
  s.peer_subnet = dir == Direction::kOutbound ? Ipv4Prefix{0x0A020000, 16} : Ipv4Prefix{0x0A010000, 16};
  s.mtu = 1600;
  s.replay_window = 64;
  return s;
}

std::vector<std::uint8_t> inner_packet(std::size_t len) {
  std::vector<std::uint8_t> p(len, 0xab);
  rte_ipv4_hdr hdr{};
  rte_ipv4_hdr* ip = &hdr;
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(len));
  ip->time_to_live = 64;
  ip->next_proto_id = 17;
  ip->src_addr = rte_cpu_to_be_32(0x0A010005);
  ip->dst_addr = rte_cpu_to_be_32(0x0A020007);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  std::memcpy(p.data(), &hdr, sizeof hdr);
  return p;
}

struct Burst {
  rte_mbuf* m[kBurst] = {};
  Burst() {
    if (rte_pktmbuf_alloc_bulk(pool(), m, kBurst) != 0) throw std::runtime_error("mbuf alloc");
  }
  ~Burst() { rte_pktmbuf_free_bulk(m, kBurst); }
  // Points every mbuf at `len` bytes from the default headroom (no copy).
  void reset(std::size_t len) noexcept {
    for (rte_mbuf* x : m) {
      x->data_off = RTE_PKTMBUF_HEADROOM;
      x->data_len = static_cast<std::uint16_t>(len);
      x->pkt_len = static_cast<std::uint32_t>(len);
    }
  }
  void fill(const std::vector<std::uint8_t>& b) noexcept {
    reset(b.size());
    for (rte_mbuf* x : m) std::memcpy(rte_pktmbuf_mtod(x, void*), b.data(), b.size());
  }
};

void bm_outbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len) {
  auto eng = crypto::EspEngine::create(bench_arch());
  auto sa = sa_create(spec(Direction::kOutbound, c, a));
  if (!eng || !sa || pool() == nullptr) {
    state.SkipWithError("setup failed");
    return;
  }
  const auto inner = inner_packet(len);
  Burst b;
  b.fill(inner);
  Sa* sas[kBurst];
  for (auto& s : sas) s = sa.value();
  LcoreStats st;
  for (auto _ : state) {
    b.reset(len);
    for (rte_mbuf* x : b.m) std::memcpy(rte_pktmbuf_mtod(x, void*), inner.data(), 20);
    if (sa.value()->seq_next.load(std::memory_order_relaxed) > 0x80000000u)
      sa.value()->seq_next.store(1, std::memory_order_relaxed);
    const auto good = esp_outbound(*eng.value(), b.m, sas, st);
    if (good != kBurst) {
      state.SkipWithError("outbound dropped packets");
      break;
    }
    benchmark::DoNotOptimize(b.m[0]);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst *
                          static_cast<std::int64_t>(len));
  sa_destroy(sa.value());
}

void bm_inbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len) {
  auto eng = crypto::EspEngine::create(bench_arch());
  auto out_sa = sa_create(spec(Direction::kOutbound, c, a));
  auto in_sa = sa_create(spec(Direction::kInbound, c, a));
  if (!eng || !out_sa || !in_sa || pool() == nullptr) {
    state.SkipWithError("setup failed");
    return;
  }
  // 32 outer packets with sequence numbers 1..32, encrypted once.
  std::vector<std::vector<std::uint8_t>> outers;
  {
    Burst b;
    b.fill(inner_packet(len));
    Sa* sas[kBurst];
    for (auto& s : sas) s = out_sa.value();
    LcoreStats st;
    if (esp_outbound(*eng.value(), b.m, sas, st) != kBurst) {
      state.SkipWithError("template encryption failed");
      return;
    }
    for (rte_mbuf* x : b.m) {
      auto* p = rte_pktmbuf_mtod(x, std::uint8_t*);
      outers.emplace_back(p, p + x->pkt_len);
    }
  }
  Burst b;
  Sa* sas[kBurst];
  for (auto& s : sas) s = in_sa.value();
  LcoreStats st;
  for (auto _ : state) {
    b.reset(outers[0].size());
    for (unsigned i = 0; i < kBurst; ++i)
      std::memcpy(rte_pktmbuf_mtod(b.m[i], void*), outers[i].data(), outers[i].size());
    in_sa.value()->replay.reset(64);
    const auto good = esp_inbound(*eng.value(), b.m, sas, st);
    if (good != kBurst) {
      state.SkipWithError("inbound dropped packets");
      break;
    }
    benchmark::DoNotOptimize(b.m[0]);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst *
                          static_cast<std::int64_t>(len));
  sa_destroy(out_sa.value());
  sa_destroy(in_sa.value());
}

// Exactly the re-preparation bm_inbound does per iteration, without the ESP work.
void bm_inbound_prep(benchmark::State& state, std::size_t len) {
  // The aes-*-sha256 plain-ESP outer size: IPv4 + ESP + IV + padded payload + 16-byte ICV.
  const std::size_t outer_len = 20 + 8 + 16 + ((len + 2 + 15) & ~std::size_t{15}) + 16;
  std::vector<std::uint8_t> t(outer_len, 0x5a);
  ReplayWindow w(64);
  Burst b;
  for (auto _ : state) {
    b.reset(outer_len);
    for (rte_mbuf* x : b.m) std::memcpy(rte_pktmbuf_mtod(x, void*), t.data(), outer_len);
    w.reset(64);
    benchmark::DoNotOptimize(b.m[0]);
    benchmark::DoNotOptimize(w);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
}

const bool registered = [] {
  const std::pair<crypto::CipherAlg, crypto::IntegAlg> combos[] = {
      {crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96},
      {crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128}};
  for (auto [c, a] : combos) {
    for (std::size_t len : {64, 512, 1400}) {
      const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
      benchmark::RegisterBenchmark(("BM_EspOutbound/" + suffix).c_str(), bm_outbound, c, a, len);
      benchmark::RegisterBenchmark(("BM_EspInbound/" + suffix).c_str(), bm_inbound, c, a, len);
    }
  }
  for (std::size_t len : {64, 512, 1400})
    benchmark::RegisterBenchmark(("BM_EspInboundPrep/" + std::to_string(len)).c_str(),
                                 bm_inbound_prep, len);
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
