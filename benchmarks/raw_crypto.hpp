// The RAW ipsec-mb work the ESP benchmarks compare against: AES-CBC + HMAC submitted straight
// to an IMB_MGR (no EspEngine, no ESP framing logic, no ICV compare), in bursts, through the
// fastest API (RawApi::kBurst: ipsec-mb's synchronous cipher and hash burst calls, as
// EspEngine's default) or the job API (RawApi::kJob, BM_RawIpsecMbJob*).
// Header-only so any benchmark in ipsecgw_bench can run the same baseline.
#pragma once

#include <benchmark/benchmark.h>
#include <intel-ipsec-mb.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/handle.hpp"
#include "crypto/esp_crypto.hpp"

namespace ipsecgw::bench {

// Short names used in benchmark names, e.g. "aes128-sha1".
inline std::string combo_name(crypto::CipherAlg c, crypto::IntegAlg a) {
  std::string s = c == crypto::CipherAlg::kAes128Cbc   ? "aes128"
                  : c == crypto::CipherAlg::kAes192Cbc ? "aes192"
                                                       : "aes256";
  return s + (a == crypto::IntegAlg::kHmacSha1_96 ? "-sha1" : "-sha256");
}

// The ipsec-mb code path for both sides of every benchmark: automatic (the fastest the CPU has),
// or forced with IPSECGW_IMB_ARCH=sse|avx|avx2|avx512, e.g. avx2 to run the benchmarks under
// valgrind, which cannot execute AVX-512 (docs/performance.md, instruction counts).
inline crypto::Arch bench_arch() {
  const char* e = std::getenv("IPSECGW_IMB_ARCH");
  if (e == nullptr || *e == '\0') return crypto::Arch::kAuto;
  const std::string v(e);
  if (v == "sse") return crypto::Arch::kSse;
  if (v == "avx") return crypto::Arch::kAvx;
  if (v == "avx2") return crypto::Arch::kAvx2;
  if (v == "avx512") return crypto::Arch::kAvx512;
  if (v == "auto") return crypto::Arch::kAuto;
  throw std::runtime_error("IPSECGW_IMB_ARCH must be sse, avx, avx2, avx512 or auto, got " + v);
}

// The ipsec-mb API of the ESP benchmarks' engines (BM_Esp*, the paired "ours"): the engine's
// default (burst), or IPSECGW_ENGINE_API=job|burst, e.g. to count the job path's instructions
// with callgrind in the same binary (docs/performance.md, "ipsec-mb burst API").
inline crypto::EngineApi bench_api() {
  const char* e = std::getenv("IPSECGW_ENGINE_API");
  if (e == nullptr || *e == '\0') return crypto::EngineApi::kBurst;
  const std::string v(e);
  if (v == "burst") return crypto::EngineApi::kBurst;
  if (v == "job") return crypto::EngineApi::kJob;
  throw std::runtime_error("IPSECGW_ENGINE_API must be burst or job, got " + v);
}

// The AES-CBC bytes ESP ciphers for an inner packet of `inner_len` bytes: the inner packet plus
// pad length and next header, padded to the AES block (RFC 4303 §2.4): 64 -> 80, 1400 -> 1408.
constexpr std::size_t esp_cipher_len(std::size_t inner_len) noexcept {
  return (inner_len + 2 + crypto::kAesBlock - 1) / crypto::kAesBlock * crypto::kAesBlock;
}

// `burst` buffers laid out like ESP packets: SPI|seq (8) | IV (16) | ciphertext | ICV, with
// EXACTLY the lengths esp_outbound/esp_inbound use for an inner packet of `inner_len` bytes:
// cipher_len = esp_cipher_len(inner_len), auth_len = 8 + 16 + cipher_len. So ours/raw isolates
// the data path's own overhead (framing, checks, IVs, counters), not a difference in crypto work.
// Throughput is counted on inner_len, as the ESP benchmarks do.
enum class RawApi { kBurst, kJob };

// Packets per burst of the raw baseline and of every ESP benchmark: the gateway's ESP burst
// (dp::kMaxBurst, dataplane/esp.hpp; esp_fixture.hpp checks they agree), so that the raw
// baseline does the same crypto calls as the data path.
inline constexpr std::size_t kGatewayBurst = 128;

class RawIpsecMb {
 public:
  static constexpr std::size_t kHdr = 8 + crypto::kMaxEspIvLen;
  static constexpr std::size_t kChunk = IMB_MAX_BURST_SIZE;  // most jobs per burst call

  RawIpsecMb(crypto::CipherAlg c, crypto::IntegAlg a, std::size_t inner_len, std::size_t burst,
             RawApi api = RawApi::kBurst)
      : api_(api),
        burst_(burst),
        cipher_len_(esp_cipher_len(inner_len)),
        stride_((kHdr + cipher_len_ + 32 + 63) / 64 * 64),
        buf_(stride_ * burst + 64, 0) {
    mgr_.reset(alloc_mb_mgr(0));
    if (!mgr_) throw std::runtime_error("alloc_mb_mgr failed");
    // The same code path EspEngine::create(bench_arch()) picks.
    switch (bench_arch()) {
      case crypto::Arch::kAuto: init_mb_mgr_auto(mgr_.get(), &arch_); break;
      case crypto::Arch::kSse: init_mb_mgr_sse(mgr_.get()); arch_ = IMB_ARCH_SSE; break;
      case crypto::Arch::kAvx: init_mb_mgr_avx(mgr_.get()); arch_ = IMB_ARCH_AVX; break;
      case crypto::Arch::kAvx2: init_mb_mgr_avx2(mgr_.get()); arch_ = IMB_ARCH_AVX2; break;
      case crypto::Arch::kAvx512: init_mb_mgr_avx512(mgr_.get()); arch_ = IMB_ARCH_AVX512; break;
    }
    if (imb_get_errno(mgr_.get()) != 0) throw std::runtime_error("ipsec-mb manager init failed");
    std::vector<std::uint8_t> ek(crypto::cipher_key_len(c), 0x42), ak(crypto::integ_key_len(a), 0x24);
    if (auto r = crypto::make_key_schedule(ks_, c, ek, a, ak); !r) throw std::runtime_error(r.error());
    for (std::size_t i = 0; i < buf_.size(); ++i) buf_[i] = static_cast<std::uint8_t>(i * 131 + 7);
    base_ = buf_.data() + (64 - reinterpret_cast<std::uintptr_t>(buf_.data()) % 64) % 64;
    hash_ = a == crypto::IntegAlg::kHmacSha1_96 ? IMB_AUTH_HMAC_SHA_1 : IMB_AUTH_HMAC_SHA_256;
    key_size_ = static_cast<IMB_KEY_SIZE_BYTES>(ks_.cipher_key_bytes);
    jobs_.resize(burst < kChunk ? burst : kChunk);
  }

  // Encrypt + authenticate every buffer of the burst in place (CIPHER_HASH, as ESP outbound);
  // returns the number completed.
  std::size_t encrypt_burst() noexcept {
    return api_ == RawApi::kBurst ? run_sync_burst(false) : run_burst(false);
  }
  // Authenticate + decrypt every buffer in place (HASH_CIPHER, as ESP inbound); the digest goes
  // to scratch after the ICV and is not compared. Returns the number completed.
  std::size_t decrypt_burst() noexcept {
    return api_ == RawApi::kBurst ? run_sync_burst(true) : run_burst(true);
  }

  // Fresh input, as RX would deliver it: save_fresh() keeps a copy of every buffer, fresh()
  // copies the first `bytes` of each back (at most the buffer stride) before a burst. Used by the
  // paired inbound benchmark so that the raw decrypt, like ours, starts from freshly written
  // ciphertext instead of decrypting its own hot output again.
  void save_fresh() { fresh_.assign(base_, base_ + stride_ * burst_); }
  void fresh(std::size_t bytes) noexcept {
    const std::size_t n = bytes < stride_ ? bytes : stride_;
    for (std::size_t i = 0; i < burst_; ++i)
      std::memcpy(base_ + i * stride_, fresh_.data() + i * stride_, n);
  }

  std::size_t cipher_len() const noexcept { return cipher_len_; }
  std::size_t auth_len() const noexcept { return kHdr + cipher_len_; }
  std::size_t burst() const noexcept { return burst_; }
  IMB_ARCH arch() const noexcept { return arch_; }

 private:
  // The synchronous burst API, in chunks of at most kChunk jobs: encrypt = one cipher burst then
  // one hash burst over the chunk, decrypt = one hash burst then one cipher burst (every job
  // filled per burst, as the job variant and the engine do).
  std::size_t run_sync_burst(bool decrypt) noexcept {
    IMB_MGR* m = mgr_.get();
    std::size_t ok = 0;
    for (std::size_t first = 0; first < burst_; first += kChunk) {
      const auto n = static_cast<std::uint32_t>(burst_ - first < kChunk ? burst_ - first : kChunk);
      IMB_JOB* jobs = jobs_.data();
      for (std::uint32_t i = 0; i < n; ++i) {
        std::uint8_t* p = base_ + (first + i) * stride_;
        IMB_JOB& job = jobs[i];
        job.enc_keys = ks_.enc_keys();
        job.dec_keys = ks_.dec_keys();
        job.key_len_in_bytes = ks_.cipher_key_bytes;
        job.src = p;
        job.dst = p + kHdr;
        job.cipher_start_src_offset_in_bytes = kHdr;
        job.msg_len_to_cipher_in_bytes = cipher_len_;
        job.iv = p + 8;
        job.iv_len_in_bytes = crypto::kMaxEspIvLen;
        job.hash_start_src_offset_in_bytes = 0;
        job.msg_len_to_hash_in_bytes = kHdr + cipher_len_;
        job.u.HMAC._hashed_auth_key_xor_ipad = ks_.ipad;
        job.u.HMAC._hashed_auth_key_xor_opad = ks_.opad;
        job.auth_tag_output = p + kHdr + cipher_len_ + (decrypt ? 16 : 0);
        job.auth_tag_output_len_in_bytes = ks_.icv_bytes;
        job.user_data = p;
      }
      std::uint32_t c, h;
      if (decrypt) {
        h = IMB_SUBMIT_HASH_BURST_NOCHECK(m, jobs, n, hash_);
        c = IMB_SUBMIT_CIPHER_BURST_NOCHECK(m, jobs, n, IMB_CIPHER_CBC, IMB_DIR_DECRYPT, key_size_);
      } else {
        c = IMB_SUBMIT_CIPHER_BURST_NOCHECK(m, jobs, n, IMB_CIPHER_CBC, IMB_DIR_ENCRYPT, key_size_);
        h = IMB_SUBMIT_HASH_BURST_NOCHECK(m, jobs, n, hash_);
      }
      ok += c < h ? c : h;
    }
    return ok;
  }

  // The job API: one job per buffer, all in flight, then one flush.
  std::size_t run_burst(bool decrypt) noexcept {
    IMB_MGR* m = mgr_.get();
    std::size_t ok = 0;
    for (std::size_t i = 0; i < burst_; ++i) {
      std::uint8_t* p = base_ + i * stride_;
      IMB_JOB* job = IMB_GET_NEXT_JOB(m);
      job->cipher_mode = IMB_CIPHER_CBC;
      job->cipher_direction = decrypt ? IMB_DIR_DECRYPT : IMB_DIR_ENCRYPT;
      job->chain_order = decrypt ? IMB_ORDER_HASH_CIPHER : IMB_ORDER_CIPHER_HASH;
      job->enc_keys = ks_.enc_keys();
      job->dec_keys = ks_.dec_keys();
      job->key_len_in_bytes = ks_.cipher_key_bytes;
      job->src = p;
      job->dst = p + kHdr;
      job->cipher_start_src_offset_in_bytes = kHdr;
      job->msg_len_to_cipher_in_bytes = cipher_len_;
      job->iv = p + 8;
      job->iv_len_in_bytes = crypto::kMaxEspIvLen;
      job->hash_alg = hash_;
      job->hash_start_src_offset_in_bytes = 0;
      job->msg_len_to_hash_in_bytes = kHdr + cipher_len_;
      job->u.HMAC._hashed_auth_key_xor_ipad = ks_.ipad;
      job->u.HMAC._hashed_auth_key_xor_opad = ks_.opad;
      job->auth_tag_output = p + kHdr + cipher_len_ + (decrypt ? 16 : 0);
      job->auth_tag_output_len_in_bytes = ks_.icv_bytes;
      job->user_data = p;
      job = IMB_SUBMIT_JOB_NOCHECK(m);  // as the ESP engine (crypto/esp_crypto.cpp)
      while (job != nullptr) {
        ok += job->status == IMB_STATUS_COMPLETED;
        job = IMB_GET_COMPLETED_JOB(m);
      }
    }
    while (IMB_JOB* job = IMB_FLUSH_JOB(m)) ok += job->status == IMB_STATUS_COMPLETED;
    return ok;
  }

  handle<IMB_MGR, free_mb_mgr> mgr_;
  RawApi api_;
  IMB_ARCH arch_ = IMB_ARCH_NONE;
  IMB_KEY_SIZE_BYTES key_size_ = IMB_KEY_128_BYTES;
  std::vector<IMB_JOB> jobs_;
  crypto::EspKeySchedule ks_;
  IMB_HASH_ALG hash_ = IMB_AUTH_HMAC_SHA_1;
  std::size_t burst_;
  std::size_t cipher_len_;
  std::size_t stride_;
  std::vector<std::uint8_t> buf_;
  std::uint8_t* base_ = nullptr;
  std::vector<std::uint8_t> fresh_;
};

// items = packets, bytes = inner packet bytes, for `burst` packets of `len` bytes per iteration
// (summed over threads by Google Benchmark).
inline void set_burst_counters(benchmark::State& state, std::size_t len, std::size_t burst) {
  const auto items = static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(burst);
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * static_cast<std::int64_t>(len));
}

// The raw benchmarks' loop: one burst per iteration, every job checked.
inline void run_raw_bursts(benchmark::State& state, RawIpsecMb& work, bool decrypt,
                           std::size_t len) {
  for (auto _ : state) {
    std::size_t done = decrypt ? work.decrypt_burst() : work.encrypt_burst();
    benchmark::DoNotOptimize(done);
    if (done != work.burst()) {
      state.SkipWithError("ipsec-mb job failed");
      break;
    }
  }
  set_burst_counters(state, len, work.burst());
}

}  // namespace ipsecgw::bench
