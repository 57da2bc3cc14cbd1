// The GoogleTest main shared by tests that need DPDK (tests/dpdk_main.cpp: one lcore,
// dpdk_main_2lcore.cpp: the main lcore and one worker, dpdk_main_3lcore.cpp: two workers).
// EAL starts without hugepages, PCI or shared config, with a per-process file prefix so test
// binaries run in parallel. Lcores are mapped onto the CPUs this process may run on
// (--lcores i@cpu), so a test with more lcores than CPUs still starts (lcores then share CPUs).
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace ipsecgw::testmain {

// "--lcores=0@c0,1@c1,...": lcore i on the i-th CPU of this process's affinity mask (wrapping).
inline std::string lcores_arg(unsigned lcores) {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  std::string arg = "--lcores=";
  for (std::size_t i = 0; i < lcores; ++i) {
    if (i != 0) arg += ',';
    arg += std::to_string(i) + "@" + std::to_string(cpus[i % cpus.size()]);
  }
  return arg;
}

// Parses the gtest flags, starts EAL with `lcores` lcores, runs every test and cleans EAL up.
// Returns the tests' exit status, or 2 when EAL does not start.
inline int run_all_tests_with_eal(int argc, char** argv, unsigned lcores) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=ipsecgw-test-" + std::to_string(getpid());
  std::vector<std::string> args = {argv[0], "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                                   prefix, "--log-level=lib.eal:error", lcores_arg(lcores)};
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

}  // namespace ipsecgw::testmain
