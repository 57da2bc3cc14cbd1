// GoogleTest main with three lcores: the main (control) lcore and two workers, for the
// gateway's multi-queue / multi-worker tests. See tests/dpdk_main_2lcore.cpp.
#define IPSECGW_TEST_LCORES 3
#include "dpdk_main_2lcore.cpp"
