// sluice: one binary, many subcommands (src/app/cli.h).
#include "app/cli.h"

int main(int argc, char** argv) { return sluice::RunCli(argc, argv); }
