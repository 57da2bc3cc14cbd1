// GoogleTest main for tests that need DPDK and worker lcores (the gateway needs one): as
// tests/dpdk_main.cpp (no hugepages, PCI or shared config, per-process file prefix) but with
// IPSECGW_TEST_LCORES lcores (default 2: the main lcore and one worker; tests/dpdk_main_3lcore.cpp
// sets 3). Lcores are mapped onto the CPUs this process may run on (--lcores i@cpu), so a test
// with more lcores than CPUs still starts (lcores then share CPUs).
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#ifndef IPSECGW_TEST_LCORES
#define IPSECGW_TEST_LCORES 2
#endif

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=ipsecgw-test-" + std::to_string(getpid());
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  std::string lcores = "--lcores=";
  for (std::size_t i = 0; i < IPSECGW_TEST_LCORES; ++i) {
    if (i != 0) lcores += ',';
    lcores += std::to_string(i) + "@" + std::to_string(cpus[i % cpus.size()]);
  }
  std::vector<std::string> args = {argv[0], "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                                   prefix, "--log-level=lib.eal:error", lcores};
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
