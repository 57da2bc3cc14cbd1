// ESP crypto engine over Intel ipsec-mb 1.3 (job API). No DPDK here: it works on plain byte
// buffers so the data plane, tests and benchmarks all drive the same code.
//
// - EspKeySchedule: per-SA, per-direction precomputed AES key expansion and HMAC ipad/opad
//   states, computed once when the SA is created; wiped on destruction.
// - EspEngine: one per lcore (it owns an IMB_MGR, which is not thread-safe). A burst of
//   EspCryptoOp is cut into runs of one algorithm pair; with EngineApi::kBurst (the default)
//   each run goes through ipsec-mb's synchronous cipher and hash burst API in chunks of at most
//   128 ops (outbound: one cipher burst then one hash burst; inbound: one hash burst, the ICV
//   compares, then one cipher burst over the verified ops only); with EngineApi::kJob (and for
//   any pair the burst path does not cover) as jobs with many in flight, then flushed.
//   * encrypt: AES-CBC over [cipher_offset, +cipher_len) then HMAC over [0, auth_len), the ICV
//     written (truncated) to `icv` (CIPHER_HASH order, RFC 4303 §3.3.2).
//   * decrypt: HMAC over [0, auth_len) of the *ciphertext* first (HASH_CIPHER order), then the
//     computed ICV is compared in constant time with `icv`; op.status = kBadIcv on mismatch. The
//     caller must not read the plaintext of an op whose status is not kOk (RFC 4303 §3.4.4).
// - The engine also is the per-lcore CSPRNG for IVs: AES-128-CTR keystream under a random key
//   from getrandom(2), rekeyed periodically (never a counter IV, never rand()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/result.hpp"

namespace ipsecgw::crypto {

enum class CipherAlg : std::uint8_t { kAes128Cbc, kAes192Cbc, kAes256Cbc };
enum class IntegAlg : std::uint8_t { kHmacSha1_96, kHmacSha256_128 };

constexpr std::size_t kAesBlock = 16;
constexpr std::size_t kMaxEspIvLen = 16;  // the longest IV of any ESP algorithm (AES-CBC)
constexpr std::size_t kMinEspIvLen = 8;   // the shortest (AES-GCM / CTR, RFC 4106 §3.1)

constexpr std::size_t cipher_key_len(CipherAlg c) noexcept {
  switch (c) {
    case CipherAlg::kAes128Cbc: return 16;
    case CipherAlg::kAes192Cbc: return 24;
    case CipherAlg::kAes256Cbc: return 32;
  }
  return 0;
}
// HMAC key length used for ESP (RFC 2404: 160 bits; RFC 4868: 256 bits).
constexpr std::size_t integ_key_len(IntegAlg a) noexcept {
  return a == IntegAlg::kHmacSha1_96 ? 20 : 32;
}
// Truncated ICV length on the wire (RFC 2404: 96 bits; RFC 4868: 128 bits).
constexpr std::size_t icv_len(IntegAlg a) noexcept { return a == IntegAlg::kHmacSha1_96 ? 12 : 16; }

// The per-SA parameters of an algorithm pair, fixed when the SA is created (as DPDK
// lib/ipsec's esp_outb_init / ipsec_sa_pkt_func_select), so the per-packet code and the engine
// take them from the SA / key schedule instead of compile-time constants.
struct EspAlgParams {
  std::uint8_t iv_len = 16;         // IV bytes after the ESP header (RFC 3602 §3: 16 for CBC)
  std::uint8_t block_align = 16;    // payload + trailer padded to a multiple of this (RFC 4303 §2.4)
  std::uint8_t cipher_offset = 24;  // from the ESP header to the ciphertext: 8 + iv_len
  std::uint8_t icv_len = 12;        // ICV bytes on the wire
  std::uint8_t key_len = 16;        // cipher key bytes (ipsec-mb key_len_in_bytes)
  std::uint8_t cipher_mode = 1;     // IMB_CIPHER_MODE (an ipsec-mb enum, stored as a byte): CBC
  std::uint8_t hash_alg = 1;        // IMB_HASH_ALG: HMAC-SHA1
};
static_assert(sizeof(EspAlgParams) == 7, "packed into the SA's first cache line");

// The parameters of (cipher, integ); both must be known algorithms.
EspAlgParams esp_alg_params(CipherAlg cipher, IntegAlg integ) noexcept;

std::string_view to_string(CipherAlg c) noexcept;  // "aes-128-cbc" ...
std::string_view to_string(IntegAlg a) noexcept;   // "hmac-sha1-96", "hmac-sha256-128"

// Which AES key expansion a schedule's user reads per packet: the one placed right after the
// HMAC states (make_key_schedule's `first`), so that a direction's hot part is contiguous.
enum class KeyUse : std::uint8_t { kEncrypt, kDecrypt };

// Precomputed per-SA key material for one direction. Wiped in the destructor.
//
// Layout (issue #12, many tunnels: every line an SA's packet touches is a cache miss under
// random traffic over 10,000 tunnels), hot first: what the engine reads per job (parameters,
// HMAC ipad/opad states, the AES expansion the direction uses) is contiguous from the start:
//   [0, 16) parameters  [16, 48) ipad state  [48, 80) opad state  [80, 80 + 16 * (rounds + 1))
// the first-used expansion; then the other one (encrypt after decrypt for an inbound SA, and
// vice versa), read only when the schedule is used the other way (tests, the raw baseline).
// AES-128 with either HMAC: bytes [0, 256), four lines; AES-256: five.
struct alignas(64) EspKeySchedule {
  // ipsec-mb modes, IV and ICV lengths the engine puts in each job, read once per run of ops of
  // one key schedule (set by make_key_schedule; make_hmac_pads sets the hash part).
  EspAlgParams alg;
  // Which of the engine's burst paths runs this schedule's jobs, chosen once when the schedule
  // is made (make_key_schedule / make_hmac_pads): an index into the engine's table of
  // algorithm pairs whose job parameters are compile-time constants, or kGenericEnginePath
  // (parameters read from `alg`), as DPDK lib/ipsec selects a per-SA packet function.
  static constexpr std::uint8_t kGenericEnginePath = 0xFF;
  std::uint8_t engine_path = kGenericEnginePath;
  CipherAlg cipher = CipherAlg::kAes128Cbc;
  IntegAlg integ = IntegAlg::kHmacSha1_96;
  std::uint8_t cipher_key_bytes = 16;
  std::uint8_t icv_bytes = 12;
  // Offsets of the encryption and decryption expansions in round_keys (0 or kRoundKeyBytes).
  std::uint16_t enc_off = 0;
  std::uint16_t dec_off = kRoundKeyBytes;
  // Hash states after the (key ^ ipad) / (key ^ opad) block: 20 bytes for SHA-1, 32 for SHA-256.
  alignas(16) std::uint8_t ipad[32];
  alignas(16) std::uint8_t opad[32];
  static constexpr std::size_t kRoundKeyBytes = 16 * 15;  // one AES expansion, max AES-256
  alignas(16) std::uint8_t round_keys[2 * kRoundKeyBytes];

  const std::uint8_t* enc_keys() const noexcept { return round_keys + enc_off; }
  const std::uint8_t* dec_keys() const noexcept { return round_keys + dec_off; }
  // The bytes the engine reads per job when used as `use` (from the start of the schedule).
  std::size_t hot_bytes(KeyUse use) const noexcept {
    return offsetof(EspKeySchedule, round_keys) + (use == KeyUse::kEncrypt ? enc_off : dec_off) +
           16u * (cipher_key_bytes / 4u + 7u);  // AES: Nk + 6 rounds, Nk + 7 round keys
  }

  EspKeySchedule() = default;
  EspKeySchedule(const EspKeySchedule&) = delete;
  EspKeySchedule& operator=(const EspKeySchedule&) = delete;
  ~EspKeySchedule();
  void wipe() noexcept;
};
static_assert(offsetof(EspKeySchedule, ipad) == 16 && offsetof(EspKeySchedule, round_keys) == 80,
              "the hot part: parameters, HMAC states, first expansion");

// Fills `out` from raw keys. Fails (naming the field and the expected length) when a key has the
// wrong length. Thread-safe: uses its own short-lived manager, so it can run on the control core.
// `first`: the expansion placed right after the HMAC states (the one the SA's direction reads
// per packet); both are computed either way.
Result<void> make_key_schedule(EspKeySchedule& out, CipherAlg cipher,
                               std::span<const std::uint8_t> enc_key, IntegAlg integ,
                               std::span<const std::uint8_t> auth_key,
                               KeyUse first = KeyUse::kEncrypt);

// Sets only the HMAC part of `out` (integ, icv_bytes, ipad, opad) from a key of ANY length
// (RFC 2104 §2: keys longer than the 64-byte block are hashed first, shorter ones zero-padded).
// make_key_schedule uses it after checking the ESP key length; tests use it for RFC 2202/4231
// vectors whose keys are not ESP-sized. Thread-safe like make_key_schedule.
Result<void> make_hmac_pads(EspKeySchedule& out, IntegAlg integ,
                            std::span<const std::uint8_t> key);

enum class OpStatus : std::uint8_t { kOk = 0, kBadIcv, kBadLength, kCryptoError };

// One packet's crypto work. Offsets are relative to `data`, which points at the ESP header.
struct EspCryptoOp {
  const EspKeySchedule* ks = nullptr;
  std::uint8_t* data = nullptr;      // ESP header; ciphertext is transformed in place
  std::uint32_t auth_len = 0;        // bytes covered by the ICV: ESP hdr + IV + ciphertext
  std::uint32_t cipher_offset = 0;   // ciphertext start (8 + ks->alg.iv_len)
  std::uint32_t cipher_len = 0;      // multiple of 16
  const std::uint8_t* iv = nullptr;  // ks->alg.iv_len bytes
  std::uint8_t* icv = nullptr;       // encrypt: ICV written here; decrypt: received ICV read here
  OpStatus status = OpStatus::kOk;
  alignas(16) std::uint8_t computed_icv[32];  // scratch for the full digest
};

enum class Arch : std::uint8_t { kAuto, kSse, kAvx, kAvx2, kAvx512 };

// Which ipsec-mb API the engine drives: the synchronous cipher/hash burst API (cipher mode,
// direction, key size and hash algorithm given once per burst; fewer instructions per packet,
// docs/performance.md "ipsec-mb burst API") or the job API (one IMB_JOB per packet, cipher and
// hash chained). Results are identical; kJob stays for the paired burst-vs-job benchmark.
enum class EngineApi : std::uint8_t { kBurst, kJob };

class EspEngine {
 public:
  static Result<std::unique_ptr<EspEngine>> create(Arch arch = Arch::kAuto,
                                                   EngineApi api = EngineApi::kBurst);
  ~EspEngine();
  EspEngine(const EspEngine&) = delete;
  EspEngine& operator=(const EspEngine&) = delete;

  // Process a burst. Every op gets its status set. noexcept, no allocation.
  void encrypt(std::span<EspCryptoOp> ops) noexcept;
  void decrypt(std::span<EspCryptoOp> ops) noexcept;

  // The same for callers that have already validated every op, as the ESP data path does while
  // parsing: ks, data, iv and icv non-null, cipher_len a non-zero multiple of 16, and
  // cipher_offset + cipher_len <= auth_len. Skips the per-op check (about 20 instructions per
  // packet); an op that breaks the contract is undefined behaviour (asserted in debug builds).
  void encrypt_validated(std::span<EspCryptoOp> ops) noexcept;
  void decrypt_validated(std::span<EspCryptoOp> ops) noexcept;

  // Unpredictable IV bytes from the per-engine CSPRNG. n is any length.
  void random_bytes(std::uint8_t* out, std::size_t n) noexcept;

  // The same bytes without a copy, for IVs: a view of `n` (at most kMaxRandomView) fresh
  // keystream bytes, valid until the next call on this engine, never handed out twice. Not
  // wiped after use: they are sent in the clear as IVs; what must stay secret (the generator's
  // key and the keystream not yet handed out) is wiped with the engine.
  static constexpr std::size_t kMaxRandomView = 4096;
  const std::uint8_t* random_view(std::size_t n) noexcept;

  // One-shot HMAC with the schedule's precomputed pads (full digest written to out[32]);
  // used by tests (RFC 2202/4231 vectors) and as the raw-crypto baseline.
  void hmac(const EspKeySchedule& ks, const std::uint8_t* msg, std::size_t len,
            std::uint8_t* out) noexcept;

  std::string_view arch_name() const noexcept;
  EngineApi api() const noexcept;

 private:
  EspEngine() = default;
  struct Impl;
  Impl* impl_ = nullptr;
};

}  // namespace ipsecgw::crypto
