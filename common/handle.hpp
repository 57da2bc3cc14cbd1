// C handles wrapped once (the Seastar pattern): handle<T, Fn> is a unique_ptr whose deleter
// calls Fn. e.g. using evp_pkey_ptr = handle<EVP_PKEY, EVP_PKEY_free>;
#pragma once

#include <memory>

namespace ipsecgw {

template <auto Fn>
struct deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    if (p != nullptr) Fn(p);
  }
};

template <class T, auto Fn>
using handle = std::unique_ptr<T, deleter<Fn>>;

}  // namespace ipsecgw
