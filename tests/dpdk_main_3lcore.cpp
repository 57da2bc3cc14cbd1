// GoogleTest main with three lcores: the main (control) lcore and two workers, for the
// gateway's multi-queue / multi-worker tests; see dpdk_main_common.hpp.
#include "dpdk_main_common.hpp"

int main(int argc, char** argv) { return ipsecgw::testmain::run_all_tests_with_eal(argc, argv, 3); }
