// GoogleTest main for tests that need DPDK, with one lcore (the main one); see
// dpdk_main_common.hpp.
#include "dpdk_main_common.hpp"

int main(int argc, char** argv) { return ipsecgw::testmain::run_all_tests_with_eal(argc, argv, 1); }
