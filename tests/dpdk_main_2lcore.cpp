// GoogleTest main for tests that need DPDK and a worker lcore (the gateway needs one): as
// tests/dpdk_main.cpp (no hugepages, PCI or shared config, per-process file prefix) but on
// lcores 0-1.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=ipsecgw-test-" + std::to_string(getpid());
  std::vector<std::string> args = {argv[0], "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                                   prefix, "--log-level=lib.eal:error", "-l", "0-1"};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init failed\n");
    return 2;
  }
  int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  return rc;
}
