// Fixture of the Store conformance suite (store_conformance_test.cc). Each
// store kind instantiates the suite with its kind name:
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest, ::testing::Values("sqlite"));
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "queue/store.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"

namespace sluice {

class StoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = testing::FreshStoreUrl(GetParam(), dir_);
    ASSERT_FALSE(url_.empty());
    store_ = OpenWith({});
    ASSERT_NE(store_, nullptr);
  }

  // Another handle on the same database (a second replica) with `options`.
  StorePtr OpenWith(StoreOptions options) {
    options.url = url_;
    return testing::OpenTestStore(GetParam(), dir_, options);
  }
  // A handle on a fresh database with `options`.
  StorePtr OpenFresh(StoreOptions options) {
    options.url = "";
    return testing::OpenTestStore(GetParam(), dir_, options);
  }

  testing::TempDir dir_;
  std::string url_;
  StorePtr store_;
};

}  // namespace sluice
