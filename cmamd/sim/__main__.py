"""``python -m cmamd.sim``: the ``cmamd sim`` sub-command on its own."""

import argparse

from cmamd.sim.command import add_arguments, main

parser = argparse.ArgumentParser(prog="cmamd sim", description="run the simulated Open API server")
add_arguments(parser)
raise SystemExit(main(parser.parse_args()))
