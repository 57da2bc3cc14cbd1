// Google Benchmark main for ipsecgw_bench. EAL is started first (no hugepages, no PCI, no shared
// config, a per-process file prefix) so that benchmarks using DPDK mempools/mbufs can live in
// the same binary as the pure-crypto ones.
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string prefix = "--file-prefix=ipsecgw-bench-" + std::to_string(getpid());
  std::vector<std::string> args = {argv[0], "--no-huge", "-m",     "512",   "--no-pci",
                                   "--no-shconf", prefix, "-l", "0", "--log-level=lib.eal:error"};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init failed\n");
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rte_eal_cleanup();
  return 0;
}
