// GoogleTest main for tests that need DPDK and worker lcores (the gateway needs one):
// IPSECGW_TEST_LCORES lcores, default 2 (the main lcore and one worker); see
// dpdk_main_common.hpp.
#include "dpdk_main_common.hpp"

#ifndef IPSECGW_TEST_LCORES
#define IPSECGW_TEST_LCORES 2
#endif

int main(int argc, char** argv) {
  return ipsecgw::testmain::run_all_tests_with_eal(argc, argv, IPSECGW_TEST_LCORES);
}
