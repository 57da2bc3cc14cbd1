// ESP crypto over Intel ipsec-mb 1.3: the synchronous cipher/hash burst API (EngineApi::kBurst,
// the default) or the job API (EngineApi::kJob, and the fallback for key schedules on the
// generic path).
//
// Burst path: IMB_SUBMIT_CIPHER_BURST_NOCHECK / IMB_SUBMIT_HASH_BURST_NOCHECK over an array of
// IMB_JOB owned by the engine (no ring: every job of the array is complete when the call
// returns, in array order). Not the asynchronous IMB_SUBMIT_BURST API, whose ring was seen
// returning jobs twice once it wraps in 1.3. The burst and job APIs share the manager's
// out-of-order lane managers, so the job queue is flushed before any burst is submitted.
//
// Job path: IMB_GET_NEXT_JOB / IMB_SUBMIT_JOB_NOCHECK / IMB_GET_COMPLETED_JOB / IMB_FLUSH_JOB,
// completed jobs mapped back to their op through job->user_data.
#include "crypto/esp_crypto.hpp"

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "common/handle.hpp"
#include "crypto/esp_crypto_internal.hpp"

namespace ipsecgw::crypto {

using namespace detail;

// Picks the fastest code path the CPU has (init_mb_mgr_auto exists in 1.3), or the one asked
// for if the CPU supports it.
Result<IMB_ARCH> detail::init_mgr(IMB_MGR* mgr, Arch want) {
  IMB_ARCH got = IMB_ARCH_NONE;
  const std::uint64_t f = mgr->features;
  auto has = [f](std::uint64_t need) { return (f & need) == need; };
  switch (want) {
    case Arch::kAuto:
      init_mb_mgr_auto(mgr, &got);
      break;
    case Arch::kSse:
      if (!has(IMB_CPUFLAGS_SSE)) return make_error("CPU lacks the SSE/AES-NI features");
      init_mb_mgr_sse(mgr);
      got = IMB_ARCH_SSE;
      break;
    case Arch::kAvx:
      if (!has(IMB_CPUFLAGS_AVX)) return make_error("CPU lacks the AVX features");
      init_mb_mgr_avx(mgr);
      got = IMB_ARCH_AVX;
      break;
    case Arch::kAvx2:
      if (!has(IMB_CPUFLAGS_AVX2)) return make_error("CPU lacks the AVX2 features");
      init_mb_mgr_avx2(mgr);
      got = IMB_ARCH_AVX2;
      break;
    case Arch::kAvx512:
      if (!has(IMB_CPUFLAGS_AVX512)) return make_error("CPU lacks the AVX-512 features");
      init_mb_mgr_avx512(mgr);
      got = IMB_ARCH_AVX512;
      break;
  }
  if (int err = imb_get_errno(mgr); err != 0) {
    return make_error(std::string("ipsec-mb manager init failed: ") + imb_get_strerror(err));
  }
  if (got == IMB_ARCH_NONE) return make_error("ipsec-mb found no usable code path");
  return got;
}

namespace {

// Fills `buf` from getrandom(2); aborts if the kernel cannot supply randomness: predictable IVs
// are worse than no gateway.
void os_random(std::uint8_t* buf, std::size_t n) noexcept {
  while (n > 0) {
    ssize_t r = getrandom(buf, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      std::abort();
    }
    buf += r;
    n -= static_cast<std::size_t>(r);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// EspEngine

namespace {
constexpr std::size_t kRngBufBytes = 4096;                     // keystream refill size
constexpr std::uint64_t kRngRekeyBytes = 16ull * 1024 * 1024;  // fresh getrandom key every 16 MiB
alignas(64) const std::uint8_t kZeros[kRngBufBytes] = {};
}  // namespace

// The most ops one synchronous burst call takes (the engine cuts longer runs into chunks).
constexpr unsigned kBurstChunk = IMB_MAX_BURST_SIZE;

struct EspEngine::Impl {
  ImbMgrPtr mgr;
  IMB_ARCH arch = IMB_ARCH_NONE;
  EngineApi api = EngineApi::kBurst;
  // The burst path's jobs, reused by every chunk (allocated with the engine, none per packet).
  alignas(64) IMB_JOB burst_jobs[kBurstChunk];

  // CSPRNG: AES-128-CTR keystream. Counter block = 8-byte random nonce | 8-byte big-endian
  // block counter starting at 0, advanced by the blocks of each refill; rekeyed (new key and
  // nonce) long before the low 32 bits could wrap, so no counter block is ever reused.
  alignas(16) std::uint8_t rng_enc_keys[16 * 15];
  alignas(16) std::uint8_t rng_dec_keys[16 * 15];
  alignas(16) std::uint8_t rng_ctr[16];
  std::uint64_t rng_block = 0;
  std::uint64_t rng_since_rekey = 0;
  std::size_t rng_pos = kRngBufBytes;  // empty
  alignas(64) std::uint8_t rng_buf[kRngBufBytes];

  ~Impl() {
    OPENSSL_cleanse(rng_enc_keys, sizeof(rng_enc_keys));
    OPENSSL_cleanse(rng_dec_keys, sizeof(rng_dec_keys));
    OPENSSL_cleanse(rng_ctr, sizeof(rng_ctr));
    OPENSSL_cleanse(rng_buf, sizeof(rng_buf));
  }

  void rng_rekey() noexcept {
    alignas(16) std::uint8_t seed[16 + 8];
    os_random(seed, sizeof(seed));
    IMB_AES_KEYEXP_128(mgr.get(), seed, rng_enc_keys, rng_dec_keys);
    std::memcpy(rng_ctr, seed + 16, 8);
    OPENSSL_cleanse(seed, sizeof(seed));
    rng_block = 0;
    rng_since_rekey = 0;
  }

  void rng_refill() noexcept {
    if (rng_since_rekey == 0 || rng_since_rekey >= kRngRekeyBytes) rng_rekey();
    for (int i = 0; i < 8; ++i) rng_ctr[8 + i] = static_cast<std::uint8_t>(rng_block >> (56 - 8 * i));

    IMB_MGR* m = mgr.get();
    IMB_JOB* job = IMB_GET_NEXT_JOB(m);
    job->cipher_mode = IMB_CIPHER_CNTR;
    job->cipher_direction = IMB_DIR_ENCRYPT;
    job->chain_order = IMB_ORDER_CIPHER_HASH;
    job->hash_alg = IMB_AUTH_NULL;
    job->enc_keys = rng_enc_keys;
    job->dec_keys = rng_enc_keys;
    job->key_len_in_bytes = IMB_KEY_128_BYTES;
    job->src = kZeros;
    job->dst = rng_buf;
    job->cipher_start_src_offset_in_bytes = 0;
    job->msg_len_to_cipher_in_bytes = kRngBufBytes;
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = 0;
    job->iv = rng_ctr;
    job->iv_len_in_bytes = 16;
    job->auth_tag_output = nullptr;
    job->auth_tag_output_len_in_bytes = 0;
    job->user_data = rng_buf;

    bool ok = false;
    IMB_JOB* done = IMB_SUBMIT_JOB(m);
    while (done == nullptr || done->user_data != rng_buf) {
      if (done == nullptr) done = IMB_FLUSH_JOB(m);
      else done = IMB_GET_COMPLETED_JOB(m);
      if (done == nullptr) break;
    }
    if (done != nullptr) ok = done->status == IMB_STATUS_COMPLETED;
    while (IMB_FLUSH_JOB(m) != nullptr) {
    }
    if (!ok) std::abort();  // the manager cannot run AES-CTR: never hand out weak IVs

    rng_block += kRngBufBytes / kAesBlock;
    rng_since_rekey += kRngBufBytes;
    rng_pos = 0;
  }
};

namespace {

inline bool op_lengths_ok(const EspCryptoOp& op) noexcept {
  if (op.ks == nullptr || op.data == nullptr || op.iv == nullptr || op.icv == nullptr) return false;
  if (op.cipher_len == 0 || op.cipher_len % kAesBlock != 0 || op.auth_len == 0) return false;
  // The ciphertext lies inside the authenticated bytes (RFC 4303 §2: ICV covers ESP hdr..trailer).
  return std::uint64_t{op.cipher_offset} + op.cipher_len <= op.auth_len;
}

// Constant-time ICV comparison (RFC 4303 §3.4.4.1). For the two ESP ICV lengths (12 and 16
// bytes, fixed per SA, so branching on the length leaks nothing) the difference is OR-ed over
// 64/32-bit words: every byte is always read, no early exit, no data-dependent branch, and the
// accumulated value is made opaque to the optimizer so it cannot turn the OR chain into
// comparisons that stop early. Same guarantee as CRYPTO_memcmp, which costs ~90 instructions
// per packet here (a byte loop behind a library call); any other length goes to CRYPTO_memcmp.
inline bool icv_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t len) noexcept {
  std::uint64_t a0, b0, diff;
  if (len == 12) {
    std::uint32_t a1, b1;
    std::memcpy(&a0, a, 8);
    std::memcpy(&b0, b, 8);
    std::memcpy(&a1, a + 8, 4);
    std::memcpy(&b1, b + 8, 4);
    diff = (a0 ^ b0) | (a1 ^ b1);
  } else if (len == 16) {
    std::uint64_t a1, b1;
    std::memcpy(&a0, a, 8);
    std::memcpy(&b0, b, 8);
    std::memcpy(&a1, a + 8, 8);
    std::memcpy(&b1, b + 8, 8);
    diff = (a0 ^ b0) | (a1 ^ b1);
  } else {
    return CRYPTO_memcmp(a, b, len) == 0;
  }
  __asm__("" : "+r"(diff));  // opaque: no short-circuit rewrite of the comparison
  return diff == 0;
}

template <bool decrypt>
inline void complete_job(const IMB_JOB* job) noexcept {
  auto* op = static_cast<EspCryptoOp*>(job->user_data);
  if (job->status != IMB_STATUS_COMPLETED) {
    op->status = OpStatus::kCryptoError;
    return;
  }
  if constexpr (decrypt) {
    // RFC 4303 §3.4.4.1: constant-time ICV check; mismatch => the packet is dropped.
    // The length from the job just completed (in cache), not through op->ks.
    op->status = icv_equal(op->computed_icv, op->icv, job->auth_tag_output_len_in_bytes)
                     ? OpStatus::kOk
                     : OpStatus::kBadIcv;
  } else {
    op->status = OpStatus::kOk;
  }
}

// The job parameters of one run of ops: compile-time constants for a fixed path (Path <
// kNumFixedAlgs), loaded from the key schedule for the generic one.
struct JobParams {
  IMB_CIPHER_MODE cipher_mode;
  IMB_HASH_ALG hash;
  std::uint64_t key_len, iv_len, icv_len;
};
template <unsigned Path>
constexpr JobParams fixed_params() noexcept {
  constexpr EspAlgParams a = esp_alg_params_constexpr(kFixedAlgs[Path].cipher, kFixedAlgs[Path].integ);
  return {static_cast<IMB_CIPHER_MODE>(a.cipher_mode), static_cast<IMB_HASH_ALG>(a.hash_alg),
          a.key_len, a.iv_len, a.icv_len};
}
inline JobParams schedule_params(const EspKeySchedule& ks) noexcept {
  const EspAlgParams a = ks.alg;
  return {static_cast<IMB_CIPHER_MODE>(a.cipher_mode), static_cast<IMB_HASH_ALG>(a.hash_alg),
          a.key_len, a.iv_len, a.icv_len};
}

constexpr unsigned kGenericPath = EspKeySchedule::kGenericEnginePath;

// Whether op goes to ipsec-mb: the checked entry points refuse bad lengths (kBadLength), the
// unchecked ones have them validated by their caller.
template <bool checked>
inline bool admit(EspCryptoOp& op) noexcept {
  if constexpr (checked) {
    if (!op_lengths_ok(op)) {
      op.status = OpStatus::kBadLength;
      return false;
    }
  } else {
    assert(op_lengths_ok(op));
  }
  return true;
}

// Submits ops[0..n) while they use path `Path` (their key schedule's engine_path); returns how
// many it took (at least 1: the caller dispatched on ops[0]). One instantiation per direction,
// checked/validated and path, so the per-job choices are constants.
template <bool decrypt, bool checked, unsigned Path>
unsigned run_ops(IMB_MGR* mgr, EspCryptoOp* ops, unsigned n) noexcept {
  const EspKeySchedule* last_ks = nullptr;
  JobParams prm{};
  if constexpr (Path != kGenericPath) prm = fixed_params<Path>();
  unsigned i = 0;
  for (; i < n; ++i) {
    EspCryptoOp& op = ops[i];
    if (!admit<checked>(op)) continue;
    const EspKeySchedule& ks = *op.ks;
    if (&ks != last_ks) {  // once per run of ops of one key schedule
      if (ks.engine_path != Path) break;
      last_ks = &ks;
      if constexpr (Path == kGenericPath) prm = schedule_params(ks);
    }
    op.status = OpStatus::kCryptoError;  // overwritten when the job comes back
    IMB_JOB* job = IMB_GET_NEXT_JOB(mgr);
    job->cipher_mode = prm.cipher_mode;
    job->enc_keys = ks.enc_keys();
    job->dec_keys = ks.dec_keys();
    job->key_len_in_bytes = prm.key_len;
    job->src = op.data;
    job->dst = op.data + op.cipher_offset;  // in place
    job->cipher_start_src_offset_in_bytes = op.cipher_offset;
    job->msg_len_to_cipher_in_bytes = op.cipher_len;
    job->iv = op.iv;
    job->iv_len_in_bytes = prm.iv_len;
    job->hash_alg = prm.hash;
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = op.auth_len;
    job->u.HMAC._hashed_auth_key_xor_ipad = ks.ipad;
    job->u.HMAC._hashed_auth_key_xor_opad = ks.opad;
    job->auth_tag_output_len_in_bytes = prm.icv_len;
    if constexpr (decrypt) {
      // RFC 4303 §3.4.4: verify the ICV over the ciphertext before decrypting.
      job->cipher_direction = IMB_DIR_DECRYPT;
      job->chain_order = IMB_ORDER_HASH_CIPHER;
      job->auth_tag_output = op.computed_icv;
    } else {
      // RFC 4303 §3.3.2: encrypt, then compute the ICV over the ciphertext.
      job->cipher_direction = IMB_DIR_ENCRYPT;
      job->chain_order = IMB_ORDER_CIPHER_HASH;
      job->auth_tag_output = op.icv;
    }
    job->user_data = &op;

    // Jobs may complete out of order relative to the ops; user_data maps them back.
    // NOCHECK: ipsec-mb's own validation of every job (~210 instructions a job on the AVX2
    // path, docs/performance.md) re-checks what is fixed here by construction: the lengths by
    // op_lengths_ok (or asserted, the caller having validated them), cipher, key, IV and tag
    // sizes by the path's parameters, from a key schedule validated when the SA was created.
    IMB_JOB* done = IMB_SUBMIT_JOB_NOCHECK(mgr);
    while (done != nullptr) {
      complete_job<decrypt>(done);
      done = IMB_GET_COMPLETED_JOB(mgr);
    }
  }
  return i;
}

template <bool decrypt, bool checked, unsigned... Paths>
unsigned run_path(IMB_MGR* mgr, EspCryptoOp* ops, unsigned n, unsigned path,
                  std::integer_sequence<unsigned, Paths...>) noexcept {
  unsigned took = 0;
  // One fold over the fixed paths; the generic path when none matches.
  const bool fixed = ((path == Paths && (took = run_ops<decrypt, checked, Paths>(mgr, ops, n), true)) || ...);
  if (!fixed) took = run_ops<decrypt, checked, kGenericPath>(mgr, ops, n);
  return took;
}

// ---- Synchronous burst API (EngineApi::kBurst) ----------------------------------------------

// Marks every op of jobs[0..n) failed (a burst call completed fewer jobs than it was given).
inline void fail_jobs(const IMB_JOB* jobs, unsigned n) noexcept {
  for (unsigned j = 0; j < n; ++j) {
    static_cast<EspCryptoOp*>(jobs[j].user_data)->status = OpStatus::kCryptoError;
  }
}

// One chunk (n <= kBurstChunk jobs, every parameter filled) of fixed path `Path`.
//   encrypt (RFC 4303 §3.3.2): one cipher burst over the chunk, then one hash burst over the
//     ciphertext; the ops' status already is kOk (set while filling) unless a call fell short.
//   decrypt (RFC 4303 §3.4.4): one hash burst over the ciphertext, a constant-time ICV compare
//     per op, then the cipher burst over the verified ops only, one call per maximal run of
//     consecutive verified jobs (one call when none failed): the data of an op whose ICV did
//     not verify is left exactly as received.
template <bool decrypt, unsigned Path>
void submit_chunk(IMB_MGR* mgr, IMB_JOB* jobs, unsigned n) noexcept {
  constexpr JobParams prm = fixed_params<Path>();
  constexpr auto key = static_cast<IMB_KEY_SIZE_BYTES>(prm.key_len);
  if constexpr (!decrypt) {
    const std::uint32_t c =
        IMB_SUBMIT_CIPHER_BURST_NOCHECK(mgr, jobs, n, prm.cipher_mode, IMB_DIR_ENCRYPT, key);
    const std::uint32_t h = IMB_SUBMIT_HASH_BURST_NOCHECK(mgr, jobs, n, prm.hash);
    if (c != n || h != n) [[unlikely]] fail_jobs(jobs, n);
  } else {
    if (IMB_SUBMIT_HASH_BURST_NOCHECK(mgr, jobs, n, prm.hash) != n) [[unlikely]] {
      fail_jobs(jobs, n);
      return;
    }
    auto decrypt_run = [mgr, key](IMB_JOB* first, unsigned count) noexcept {
      if (count == 0) return;
      if (IMB_SUBMIT_CIPHER_BURST_NOCHECK(mgr, first, count, prm.cipher_mode, IMB_DIR_DECRYPT,
                                          key) != count) [[unlikely]]
        fail_jobs(first, count);
    };
    unsigned from = 0;
    for (unsigned j = 0; j < n; ++j) {
      auto* op = static_cast<EspCryptoOp*>(jobs[j].user_data);
      if (icv_equal(op->computed_icv, op->icv, prm.icv_len)) [[likely]] {
        op->status = OpStatus::kOk;
      } else {
        op->status = OpStatus::kBadIcv;
        decrypt_run(jobs + from, j - from);  // the verified ops before this one
        from = j + 1;
      }
    }
    decrypt_run(jobs + from, n - from);
  }
}

// Fills jobs for ops[0..n) while they use fixed path `Path`, submitting a chunk whenever
// kBurstChunk jobs are filled and the rest at the end; returns how many ops it took (at least
// 1: the caller dispatched on ops[0]). Only the fields ipsec-mb 1.3's AES-CBC and HMAC bursts
// read are set (mode, direction, key size and hash algorithm are per call).
template <bool decrypt, bool checked, unsigned Path>
unsigned burst_ops(IMB_MGR* mgr, IMB_JOB* jobs, EspCryptoOp* ops, unsigned n) noexcept {
  constexpr JobParams prm = fixed_params<Path>();
  static_assert(prm.cipher_mode == IMB_CIPHER_CBC && prm.iv_len == 16,
                "the job fill below is AES-CBC's (a new fixed path needs its fields)");
  const EspKeySchedule* last_ks = nullptr;
  unsigned nj = 0;
  unsigned i = 0;
  for (; i < n; ++i) {
    EspCryptoOp& op = ops[i];
    if (!admit<checked>(op)) continue;
    const EspKeySchedule& ks = *op.ks;
    if (&ks != last_ks) {  // once per run of ops of one key schedule
      if (ks.engine_path != Path) break;
      last_ks = &ks;
    }
    // Outbound: final unless a burst call falls short. Inbound: set after the ICV compare.
    op.status = decrypt ? OpStatus::kCryptoError : OpStatus::kOk;
    IMB_JOB& job = jobs[nj];
    job.src = op.data;
    job.dst = op.data + op.cipher_offset;  // in place
    job.cipher_start_src_offset_in_bytes = op.cipher_offset;
    job.msg_len_to_cipher_in_bytes = op.cipher_len;
    job.iv = op.iv;  // 16 bytes: AES-CBC (the IV and key lengths are per call)
    if constexpr (decrypt) job.dec_keys = ks.dec_keys();
    else job.enc_keys = ks.enc_keys();
    job.hash_start_src_offset_in_bytes = 0;
    job.msg_len_to_hash_in_bytes = op.auth_len;
    job.u.HMAC._hashed_auth_key_xor_ipad = ks.ipad;
    job.u.HMAC._hashed_auth_key_xor_opad = ks.opad;
    job.auth_tag_output = decrypt ? op.computed_icv : op.icv;
    job.auth_tag_output_len_in_bytes = prm.icv_len;
    job.user_data = &op;
    if (++nj == kBurstChunk) {
      submit_chunk<decrypt, Path>(mgr, jobs, nj);
      nj = 0;
    }
  }
  if (nj != 0) submit_chunk<decrypt, Path>(mgr, jobs, nj);
  return i;
}

template <bool decrypt, bool checked, unsigned... Paths>
unsigned burst_path(IMB_MGR* mgr, IMB_JOB* jobs, EspCryptoOp* ops, unsigned n, unsigned path,
                    std::integer_sequence<unsigned, Paths...>) noexcept {
  unsigned took = 0;
  ((path == Paths && (took = burst_ops<decrypt, checked, Paths>(mgr, jobs, ops, n), true)) ||
   ...);
  return took;
}

template <bool decrypt>
inline void flush_jobs(IMB_MGR* mgr) noexcept {
  while (IMB_JOB* done = IMB_FLUSH_JOB(mgr)) complete_job<decrypt>(done);
}

// A burst: runs of ops of one path each (a burst is mostly one SA: one run). A run of a fixed
// path goes through the synchronous burst API (api == kBurst), any other through the job API;
// queued jobs are flushed before the next burst call (the two APIs share the lane managers)
// and at the end.
template <bool decrypt, bool checked>
void run_burst(IMB_MGR* mgr, EngineApi api, IMB_JOB* burst_jobs,
               std::span<EspCryptoOp> ops) noexcept {
  EspCryptoOp* p = ops.data();
  unsigned n = static_cast<unsigned>(ops.size());
  bool jobs_queued = false;
  while (n != 0) {
    if constexpr (checked) {
      if (!op_lengths_ok(*p)) {  // no key schedule to dispatch on
        p->status = OpStatus::kBadLength;
        ++p;
        --n;
        continue;
      }
    }
    const unsigned path = p->ks->engine_path;
    unsigned took;
    if (api == EngineApi::kBurst && path < kNumFixedAlgs) {
      if (jobs_queued) {
        flush_jobs<decrypt>(mgr);
        jobs_queued = false;
      }
      took = burst_path<decrypt, checked>(mgr, burst_jobs, p, n, path,
                                          std::make_integer_sequence<unsigned, kNumFixedAlgs>{});
    } else {
      took = run_path<decrypt, checked>(mgr, p, n, path,
                                        std::make_integer_sequence<unsigned, kNumFixedAlgs>{});
      jobs_queued = true;
    }
    p += took;
    n -= took;
  }
  if (jobs_queued) flush_jobs<decrypt>(mgr);
}

}  // namespace

Result<std::unique_ptr<EspEngine>> EspEngine::create(Arch arch, EngineApi api) {
  std::unique_ptr<EspEngine> eng(new EspEngine());
  auto impl = std::make_unique<Impl>();
  impl->mgr.reset(alloc_mb_mgr(0));
  if (!impl->mgr) return make_error("alloc_mb_mgr failed");
  auto got = init_mgr(impl->mgr.get(), arch);
  if (!got) return make_error(got.error());
  impl->arch = got.value();
  impl->api = api;
  eng->impl_ = impl.release();
  return eng;
}

EspEngine::~EspEngine() { delete impl_; }

void EspEngine::encrypt(std::span<EspCryptoOp> ops) noexcept {
  Impl& s = *impl_;
  run_burst</*decrypt=*/false, /*checked=*/true>(s.mgr.get(), s.api, s.burst_jobs, ops);
}

void EspEngine::decrypt(std::span<EspCryptoOp> ops) noexcept {
  Impl& s = *impl_;
  run_burst</*decrypt=*/true, /*checked=*/true>(s.mgr.get(), s.api, s.burst_jobs, ops);
}

void EspEngine::encrypt_validated(std::span<EspCryptoOp> ops) noexcept {
  Impl& s = *impl_;
  run_burst</*decrypt=*/false, /*checked=*/false>(s.mgr.get(), s.api, s.burst_jobs, ops);
}

void EspEngine::decrypt_validated(std::span<EspCryptoOp> ops) noexcept {
  Impl& s = *impl_;
  run_burst</*decrypt=*/true, /*checked=*/false>(s.mgr.get(), s.api, s.burst_jobs, ops);
}

void EspEngine::random_bytes(std::uint8_t* out, std::size_t n) noexcept {
  Impl& s = *impl_;
  while (n > 0) {
    if (s.rng_pos == kRngBufBytes) s.rng_refill();
    std::size_t take = kRngBufBytes - s.rng_pos;
    if (take > n) take = n;
    std::memcpy(out, s.rng_buf + s.rng_pos, take);
    // Used keystream is erased so a later memory disclosure cannot reveal past IVs' neighbours.
    // An inline memset kept alive by a compiler barrier (what OPENSSL_cleanse guarantees,
    // without its out-of-line byte loop: one call per burst wipes the burst's IVs).
    std::memset(s.rng_buf + s.rng_pos, 0, take);
    asm volatile("" : : "r"(s.rng_buf + s.rng_pos) : "memory");
    s.rng_pos += take;
    out += take;
    n -= take;
  }
}

const std::uint8_t* EspEngine::random_view(std::size_t n) noexcept {
  static_assert(kMaxRandomView <= kRngBufBytes);
  Impl& s = *impl_;
  if (n > kMaxRandomView) std::abort();  // contract: a burst's IVs (128 x 16 bytes)
  if (kRngBufBytes - s.rng_pos < n) {
    // The rest of this buffer is never handed out: wipe it, then fresh keystream.
    OPENSSL_cleanse(s.rng_buf + s.rng_pos, kRngBufBytes - s.rng_pos);
    s.rng_refill();
  }
  const std::uint8_t* p = s.rng_buf + s.rng_pos;
  s.rng_pos += n;
  return p;
}

void EspEngine::hmac(const EspKeySchedule& ks, const std::uint8_t* msg, std::size_t len,
                     std::uint8_t* out) noexcept {
  IMB_MGR* m = impl_->mgr.get();
  const std::size_t dlen = digest_len(ks.integ);
  std::memset(out, 0, 32);
  IMB_JOB* job = IMB_GET_NEXT_JOB(m);
  job->cipher_mode = IMB_CIPHER_NULL;
  job->cipher_direction = IMB_DIR_ENCRYPT;
  job->chain_order = IMB_ORDER_HASH_CIPHER;
  job->enc_keys = nullptr;
  job->dec_keys = nullptr;
  job->key_len_in_bytes = 0;
  job->src = msg;
  job->dst = nullptr;
  job->cipher_start_src_offset_in_bytes = 0;
  job->msg_len_to_cipher_in_bytes = 0;
  job->iv = nullptr;
  job->iv_len_in_bytes = 0;
  job->hash_alg = imb_hash(ks.integ);
  job->hash_start_src_offset_in_bytes = 0;
  job->msg_len_to_hash_in_bytes = len;
  job->u.HMAC._hashed_auth_key_xor_ipad = ks.ipad;
  job->u.HMAC._hashed_auth_key_xor_opad = ks.opad;
  job->auth_tag_output = out;
  job->auth_tag_output_len_in_bytes = dlen;
  job->user_data = out;

  bool ok = false;
  IMB_JOB* done = IMB_SUBMIT_JOB(m);
  for (;;) {
    if (done == nullptr) done = IMB_FLUSH_JOB(m);
    if (done == nullptr) break;
    if (done->user_data == out) {
      ok = done->status == IMB_STATUS_COMPLETED;
      break;
    }
    done = IMB_GET_COMPLETED_JOB(m);
  }
  while (IMB_FLUSH_JOB(m) != nullptr) {
  }
  if (!ok) std::memset(out, 0, 32);
}

EngineApi EspEngine::api() const noexcept { return impl_->api; }

std::string_view EspEngine::arch_name() const noexcept {
  switch (impl_->arch) {
    case IMB_ARCH_NOAESNI: return "noaesni";
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return "avx2";
    case IMB_ARCH_AVX512: return "avx512";
    default: return "none";
  }
}

}  // namespace ipsecgw::crypto
