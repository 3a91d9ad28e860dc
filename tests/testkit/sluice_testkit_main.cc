// sluice-testkit: the shipped binary's commands plus the test hooks
// (testkit/testkit.h). Built by the test and bench builds only; never shipped.
#include "app/cli.h"
#include "testkit/testkit.h"

int main(int argc, char** argv) { return sluice::RunCli(argc, argv, sluice::TestkitHooks()); }
