"""The `logsense` command: serve, bench."""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logsense", description="LogSense log anomaly detection server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server on embedded defaults")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", default=None, help="where the database and model artifacts live")
    serve.set_defaults(func=run_serve)

    from models.bench import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="benchmark every detector on a labeled data set")
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from models.bench import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
