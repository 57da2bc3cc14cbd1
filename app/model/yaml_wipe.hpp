// Wiping secrets out of text and parsed YAML before they are freed: the config file and the
// API's state file both hold PSKs (app/config.cpp, app/model/store.cpp).
#pragma once

#include <string.h>  // explicit_bzero (glibc)
#include <yaml-cpp/yaml.h>

#include <istream>
#include <streambuf>
#include <string>
#include <unordered_set>

#include "common/result.hpp"

namespace ipsecgw::model {

inline void wipe_text(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
}

// yaml-cpp reads an istream: this one reads the caller's buffer in place (YAML::Load of a
// std::string would copy it into a stringstream that is freed unwiped).
class InPlaceBuf final : public std::streambuf {
 public:
  InPlaceBuf(char* p, std::size_t n) { setg(p, p, p + n); }
};

namespace detail {
inline void wipe_scalars(const YAML::Node& n, std::unordered_set<int>& expanded, int depth) {
  if (!n.IsDefined()) return;
  if (n.IsScalar()) {
    // Scalar() is a reference to the node's own string, which is not a const object.
    wipe_text(const_cast<std::string&>(n.Scalar()));
    return;
  }
  if (depth >= 64 || (n.Mark().pos >= 0 && !expanded.insert(n.Mark().pos).second)) return;
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (n.IsMap()) {
      wipe_scalars(it->first, expanded, depth + 1);
      wipe_scalars(it->second, expanded, depth + 1);
    } else {
      wipe_scalars(*it, expanded, depth + 1);
    }
  }
}
}  // namespace detail

// Overwrites every scalar of a parsed tree before yaml-cpp frees it. Aliases make the tree a
// graph, cyclic even (`&l [*l]`): each map or sequence is expanded once, known by where it
// starts in the text (Mark), and the depth is bounded (64) as a backstop.
inline void wipe_scalars(const YAML::Node& root) {
  std::unordered_set<int> expanded;
  detail::wipe_scalars(root, expanded, 0);
}

// Parses text in place (InPlaceBuf) and wipes it, parsed or not; the caller wipes the tree
// (wipe_scalars). A syntax error names line, column and problem: yaml-cpp reports position and
// problem, not the offending text, so no secret reaches the message.
inline Result<YAML::Node> load_yaml_and_wipe(std::string& text) {
  YAML::Node root;
  try {
    InPlaceBuf buf(text.data(), text.size());
    std::istream in(&buf);
    root = YAML::Load(in);
    wipe_text(text);
  } catch (const YAML::Exception& e) {
    wipe_text(text);
    return make_error("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                      ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return root;
}

}  // namespace ipsecgw::model
