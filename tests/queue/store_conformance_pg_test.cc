// The Store conformance suite (store_conformance_test.cc) on PostgreSQL.
// Needs SLUICE_TEST_PG_URL (the CTest fixture provides it); fails without.
#include "queue/store_conformance_fixture.h"

namespace sluice {

INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest, ::testing::Values("postgres"));

}  // namespace sluice
