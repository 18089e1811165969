"""python -m tests.fake_llm --port P [--latency S]: serve the fake LLM until interrupted."""

import argparse

from aiohttp import web

from tests.fake_llm.server import BACKLOG, FakeLLM, make_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_llm", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply (the median with --latency-sigma)")
    parser.add_argument("--latency-sigma", type=float, default=0.0,
                        help="> 0: each reply's latency is log-normal with median --latency and this sigma")
    args = parser.parse_args()
    state = FakeLLM()
    state.set(latency=args.latency, latency_sigma=args.latency_sigma)
    web.run_app(make_app(state), host=args.host, port=args.port, print=None, access_log=None, backlog=BACKLOG)


if __name__ == "__main__":
    main()
