// libFuzzer target: arbitrary bytes as outer IPv4 packets through esp_inbound_parse and
// esp_inbound / esp_inbound_recorded (dataplane/esp.hpp), with a few installed inbound SAs.
//
// The input is a sequence of records, each one packet of one burst (up to kMaxBurst):
//   ctl (1) | len (2, little endian) | len bytes
//   ctl bit 0 clear: the bytes ARE the outer packet (parser, lengths, replay pre-check, ICV).
//   ctl bit 0 set:   the bytes are seq (4) | IV (16) | outer TOS (1) | plaintext; the harness
//                    wraps them in a well-formed outer IPv4 [+ UDP 4500] + ESP header for the SA
//                    chosen by ctl bits 1-2 and encrypts + authenticates them with that SA's
//                    keys, so the ICV passes and the code AFTER the ICV (replay window update,
//                    padding, next header, inner header, selectors, ECN) sees fuzzed plaintext.
//   ctl bit 3:       hand the packet to esp_inbound with the SA of bits 1-2 whatever its SPI
//                    (as if the lookup were wrong), instead of the SA its parsed SPI finds.
//   ctl bit 4:       deliver the packet as a two-segment mbuf chain (split at byte ctl >> 5 * 8).
// Seeds: tests/fuzz/seeds/fuzz_esp_inbound (IPSECGW_FUZZ_VERBOSE=1 prints each burst's verdicts).
//
// Besides ASan, the burst contract is checked (dataplane/esp.hpp): no packet lost or duplicated,
// good packets first, every bad one counted exactly once, good ones hold an inner IPv4 packet
// whose length and addresses match the SA; no mbuf leaks.
#include <rte_eal.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "crypto/esp_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"

using namespace ipsecgw;
using namespace ipsecgw::dp;

namespace {

struct SaDef {
  std::uint32_t spi;
  crypto::CipherAlg cipher;
  crypto::IntegAlg integ;
  bool udp_encap;
  std::uint32_t replay_window;
};

// Index 3 has keys but is never installed: its SPI finds no SA (kNoSa after a valid ICV).
constexpr SaDef kSaDefs[4] = {
    {0x00001000, crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96, false, 64},
    {0x00002000, crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128, true, 0},
    {0x00003000, crypto::CipherAlg::kAes192Cbc, crypto::IntegAlg::kHmacSha256_128, false, 1024},  // limits
    {0x0000dead, crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96, false, 64},
};
constexpr Ipv4 kUs = 0xC6336402;    // 198.51.100.2, the outer destination
constexpr Ipv4 kPeer = 0xC0000201;  // 192.0.2.1

rte_mempool* g_pool = nullptr;
std::unique_ptr<crypto::EspEngine> g_engine;
InboundSa* g_sas[4] = {};
constexpr std::uint16_t kDataRoom = 4096;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_esp_inbound: %s\n", what);
  std::abort();
}

InboundSa* make_sa(const SaDef& d) {
  SaSpec s;
  s.dir = Direction::kInbound;
  s.spi = d.spi;
  s.cipher = d.cipher;
  s.integ = d.integ;
  std::vector<std::uint8_t> ek(crypto::cipher_key_len(d.cipher)), ak(crypto::integ_key_len(d.integ));
  for (std::size_t i = 0; i < ek.size(); ++i) ek[i] = static_cast<std::uint8_t>(d.spi + 3 * i);
  for (std::size_t i = 0; i < ak.size(); ++i) ak[i] = static_cast<std::uint8_t>(d.spi + 5 * i + 1);
  s.enc_key = crypto::SecureBytes(ek.data(), ek.size());
  s.auth_key = crypto::SecureBytes(ak.data(), ak.size());
  s.local_addr = kUs;
  s.peer_addr = kPeer;
  s.udp_encap = d.udp_encap;
  s.local_subnet = {0x0A020000, 16};  // 10.2/16 behind us
  s.peer_subnet = {0x0A010000, 16};   // 10.1/16 behind the peer
  s.replay_window = d.replay_window;
  if (d.spi == 0x00003000) {  // volume limits: soft event, then kSaDown past the hard one
    s.soft_packets = 2;
    s.hard_packets = 4;
  }
  auto r = sa_create<InboundSa>(s);
  if (!r.ok()) die(r.error().c_str());
  return r.value();
}

InboundSa* installed_sa(std::uint32_t spi) {
  for (int i = 0; i < 3; ++i)
    if (g_sas[i]->spi == spi) return g_sas[i];
  return nullptr;
}

void put16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

// Outer IPv4 [+ UDP] + ESP + IV + ciphertext + ICV around fuzzed plaintext, encrypted and
// authenticated with sa's keys (RFC 4303 §3.3.2 order: encrypt, then ICV over the ciphertext).
std::vector<std::uint8_t> seal(const InboundSa& sa, const std::uint8_t* in, std::size_t len) {
  std::uint8_t hdr[21] = {};
  std::memcpy(hdr, in, std::min<std::size_t>(len, sizeof hdr));
  const std::uint8_t* pt = in + std::min<std::size_t>(len, sizeof hdr);
  const std::size_t pt_len = len - std::min<std::size_t>(len, sizeof hdr);
  const std::size_t clen = std::max<std::size_t>(16, (pt_len + 15) / 16 * 16);
  const bool udp = (sa.flags & kSaUdpEncap) != 0;
  const std::size_t esp_off = 20 + (udp ? 8 : 0);
  const std::size_t total = esp_off + 24 + clen + sa.alg.icv_len;
  std::vector<std::uint8_t> p(total, 0);
  p[0] = 0x45;
  p[1] = hdr[20];  // outer TOS (ECN)
  put16(&p[2], static_cast<std::uint16_t>(total));
  p[8] = 64;
  p[9] = udp ? kIpProtoUdp : kIpProtoEsp;
  put32(&p[12], kPeer);
  put32(&p[16], kUs);
  put16(&p[10], rte_ipv4_cksum(reinterpret_cast<const rte_ipv4_hdr*>(p.data())));
  if (udp) {
    put16(&p[20], kNatTPort);
    put16(&p[22], kNatTPort);
    put16(&p[24], static_cast<std::uint16_t>(total - 20));
  }
  std::uint8_t* esp = &p[esp_off];
  put32(esp, sa.spi);
  std::memcpy(esp + 4, hdr, 4);        // sequence number
  std::memcpy(esp + 8, hdr + 4, 16);   // IV
  std::memcpy(esp + 24, pt, pt_len);   // zero-padded to the block
  crypto::EspCryptoOp op;
  op.ks = &sa.keys;
  op.data = esp;
  op.auth_len = static_cast<std::uint32_t>(24 + clen);
  op.cipher_offset = 24;
  op.cipher_len = static_cast<std::uint32_t>(clen);
  op.iv = esp + 8;
  op.icv = esp + 24 + clen;
  g_engine->encrypt(std::span<crypto::EspCryptoOp>(&op, 1));
  if (op.status != crypto::OpStatus::kOk) die("seal: encrypt failed");
  return p;
}

rte_mbuf* to_mbuf(const std::vector<std::uint8_t>& b, bool chain, std::size_t split) {
  const std::size_t len = std::min<std::size_t>(b.size(), kDataRoom);
  rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
  if (m == nullptr) die("mbuf alloc");
  if (!chain || len < 2) {
    char* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(len));
    if (d == nullptr && len != 0) die("append");
    if (len != 0) std::memcpy(d, b.data(), len);
    return m;
  }
  split = std::clamp<std::size_t>(split, 1, len - 1);
  rte_mbuf* m2 = rte_pktmbuf_alloc(g_pool);
  if (m2 == nullptr) die("mbuf alloc");
  std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(split)), b.data(), split);
  std::memcpy(rte_pktmbuf_append(m2, static_cast<std::uint16_t>(len - split)), b.data() + split,
              len - split);
  if (rte_pktmbuf_chain(m, m2) != 0) die("chain");
  return m;
}

std::uint32_t rd32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  std::string prefix = "--file-prefix=ipsecgw-fuzz-" + std::to_string(getpid());
  std::vector<std::string> args = {"fuzz_esp_inbound", "--no-huge", "--no-pci", "--no-shconf",
                                   "-m", "256", "-l", "0", prefix, "--log-level=lib.eal:error"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) die("rte_eal_init failed");
  g_pool = rte_pktmbuf_pool_create("fuzz_pool", 255, 0, 0, kDataRoom + RTE_PKTMBUF_HEADROOM,
                                   SOCKET_ID_ANY);
  if (g_pool == nullptr) die("rte_pktmbuf_pool_create failed");
  auto e = crypto::EspEngine::create();
  if (!e.ok()) die(e.error().c_str());
  g_engine = std::move(e.value());
  for (int i = 0; i < 4; ++i) g_sas[i] = make_sa(kSaDefs[i]);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Every input starts from the same SA state (replay windows empty, SAs alive).
  for (int i = 0; i < 4; ++i) {
    g_sas[i]->replay.reset(kSaDefs[i].replay_window);
    g_sas[i]->dead.store(false, std::memory_order_relaxed);
    g_sas[i]->events.store(0, std::memory_order_relaxed);
    g_sas[i]->counters.packets.store(0, std::memory_order_relaxed);
    g_sas[i]->counters.bytes.store(0, std::memory_order_relaxed);
  }

  rte_mbuf* pkts[kMaxBurst];
  InboundSa* sas[kMaxBurst];
  unsigned n = 0;
  LcoreStats st;
  std::size_t off = 0;
  while (off + 3 <= size && n < kMaxBurst) {
    const std::uint8_t ctl = data[off];
    std::size_t len = data[off + 1] | std::size_t{data[off + 2]} << 8;
    off += 3;
    len = std::min(len, size - off);
    const std::uint8_t* rec = data + off;
    off += len;
    const unsigned sa_idx = (ctl >> 1) & 3;
    std::vector<std::uint8_t> pkt = (ctl & 1) ? seal(*g_sas[sa_idx], rec, len)
                                              : std::vector<std::uint8_t>(rec, rec + len);
    rte_mbuf* m = to_mbuf(pkt, (ctl & 0x10) != 0, static_cast<std::size_t>(ctl >> 5) * 8);

    InboundSa* sa = nullptr;
    EspInboundInfo info;
    DropReason why = DropReason::kCount;
    if (esp_inbound_parse(m, &info, &why)) {
      sa = installed_sa(info.spi);
    } else if (why >= DropReason::kCount) {
      die("esp_inbound_parse failed without a reason");
    } else if (!(ctl & 0x08)) {
      // What the gateway does: count and free, never reaching esp_inbound.
      rte_pktmbuf_free(m);
      continue;
    }
    if (ctl & 0x08) sa = sa_idx < 3 ? g_sas[sa_idx] : nullptr;
    pkts[n] = m;
    sas[n] = sa;
    ++n;
  }
  if (n == 0) return 0;

  rte_mbuf* before[kMaxBurst];
  InboundSa* sa_of[kMaxBurst];
  std::copy(pkts, pkts + n, before);
  std::copy(sas, sas + n, sa_of);
  std::uint64_t sa_drops_before = 0;
  for (int i = 0; i < 3; ++i)
    for (auto& d : g_sas[i]->counters.drops) sa_drops_before += d.load();

  // When every packet's layout was recorded by esp_inbound_parse (the gateway's path), inputs
  // of odd size go through esp_inbound_recorded, which trusts it; the others through
  // esp_inbound, which parses again.
  const bool recorded = (size & 1) != 0 && std::all_of(pkts, pkts + n, [](const rte_mbuf* m) {
    return esp_layout_recorded(m);
  });
  const std::uint16_t good =
      recorded ? esp_inbound_recorded(*g_engine, std::span<rte_mbuf*>(pkts, n),
                                      std::span<InboundSa* const>(sas, n), st)
               : esp_inbound(*g_engine, std::span<rte_mbuf*>(pkts, n),
                             std::span<InboundSa* const>(sas, n), st);

  if (std::getenv("IPSECGW_FUZZ_VERBOSE") != nullptr) {  // to check what a seed reaches
    std::fprintf(stderr, "burst: %u packets, %u good;", n, unsigned{good});
    for (unsigned r = 0; r < kDropReasonCount; ++r)
      if (st.drops[r] != 0)
        std::fprintf(stderr, " %s=%llu", std::string(to_string(static_cast<DropReason>(r))).c_str(),
                     static_cast<unsigned long long>(st.drops[r]));
    std::fprintf(stderr, "\n");
  }

  // Burst contract (dataplane/esp.hpp).
  if (good > n) die("more good packets than packets");
  std::uint64_t lcore_drops = 0;
  for (auto d : st.drops) lcore_drops += d;
  if (lcore_drops != n - good) die("bad packets not each counted once in LcoreStats::drops");
  if (st.esp_in_packets != good) die("esp_in_packets != good");
  std::uint64_t sa_drops_after = 0;
  for (int i = 0; i < 3; ++i)
    for (auto& d : g_sas[i]->counters.drops) sa_drops_after += d.load();
  unsigned bad_with_sa = 0;
  for (unsigned i = good; i < n; ++i) {
    const unsigned k = static_cast<unsigned>(std::find(before, before + n, pkts[i]) - before);
    if (k < n && sa_of[k] != nullptr) ++bad_with_sa;
  }
  if (sa_drops_after - sa_drops_before != bad_with_sa) die("SA drop counters != bad packets with an SA");
  unsigned last_k = 0;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned k = static_cast<unsigned>(std::find(before, before + n, pkts[i]) - before);
    if (k == n) die("a packet not from the burst came back");
    if (std::count(pkts, pkts + n, pkts[i]) != 1) die("a packet came back twice");
    if (i == good) last_k = 0;
    if (i != 0 && i != good && k < last_k) die("order not kept within good or bad packets");
    last_k = k;
    if (i < good) {
      rte_mbuf* m = pkts[i];
      const InboundSa* sa = sa_of[k];
      if (sa == nullptr) die("a packet without SA passed");
      if (m->pkt_len < 20 || m->data_len < 20) die("good packet shorter than an IPv4 header");
      const auto* ip = rte_pktmbuf_mtod(m, const std::uint8_t*);
      if ((ip[0] >> 4) != 4) die("good packet not IPv4");
      if ((std::uint32_t{ip[2]} << 8 | ip[3]) != m->pkt_len) die("inner length != pkt_len");
      if (!sa->peer_subnet.contains(rd32(ip + 12)) || !sa->local_subnet.contains(rd32(ip + 16)))
        die("good packet outside the SA's selectors");
    }
  }

  for (unsigned i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
  if (rte_mempool_in_use_count(g_pool) != 0) die("mbuf leak");
  return 0;
}
