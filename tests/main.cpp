// The doctest runner: every tests/test_*.cpp links into one binary, build/run_tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
