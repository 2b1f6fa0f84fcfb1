"""The `logsense` command: serve, apikey, user, db, bench, scan, watch.

Settings come from `LOGSENSE_*` / `.env`; `--data-dir` (and serve's flags) override them.
`bench` imports `models.bench` (torch and friends) only when it is the command being run, and
a failing import breaks only `bench`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from logsense.server.settings import Settings

ROLES = ("viewer", "operator", "admin")  # = server.users.ROLES, not imported here: argon2 and the tables load lazily


def build_parser(include_bench: bool = True) -> argparse.ArgumentParser:
    """The argument parser; `include_bench=False` skips importing models.bench for its arguments."""
    parser = argparse.ArgumentParser(prog="logsense", description="LogSense log anomaly detection server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server on embedded defaults")
    serve.add_argument("--host", default=None, help="interface to bind (default: settings, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: settings, 8000)")
    serve.add_argument("--data-dir", default=None, help="where the database and model artifacts live")
    serve.add_argument("--dev", action="store_true", default=None, help="dev mode: /api needs no API key")
    serve.add_argument("--syslog-port", type=int, default=None,
                       help="also listen for syslog over TCP on this port (default: settings, off)")
    serve.add_argument("--role", choices=["all", "api", "processor", "worker"], default=None,
                       help="what this process runs (default: settings, all); the cluster roles need PostgreSQL "
                       "and a broker_url")
    serve.set_defaults(func=run_serve)

    apikey = sub.add_parser("apikey", help="create, list and revoke API keys")
    keys = apikey.add_subparsers(dest="apikey_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (once: only its hash is stored)")
    create.add_argument("name", help="what the key is for, e.g. the sending host")
    create.add_argument("--scope", action="append", choices=["ingest", "read", "operate", "admin"], default=None,
                        help="what it may do (repeat for more): ingest (post lines: a shipper), read, operate "
                             "(read, feedback, review, train), admin (everything; the default)")
    create.add_argument("--stream", action="append", default=None, help="limit it to this stream (repeat for more)")
    create.set_defaults(func=run_apikey_create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.set_defaults(func=run_apikey_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=run_apikey_revoke)
    for p in (create, listing, revoke):
        p.add_argument("--data-dir", default=None, help="the server's data directory")

    user = sub.add_parser("user", help="web UI users: create, list, delete, set-password, set-role")
    users = user.add_subparsers(dest="user_command", required=True)
    user_create = users.add_parser("create", help="create a user who can log in to the web UI")
    user_create.add_argument("username")
    user_create.add_argument("--role", choices=ROLES, default=None,
                             help="viewer (read), operator (also verdicts, the training review, retrain), admin (also "
                                  "stream settings, creating streams, rollbacks); default: admin for the first user, "
                                  "else operator")
    user_create.add_argument("--password-stdin", action="store_true",
                             help="read the password from the first line of standard input (else: prompt)")
    user_create.set_defaults(func=run_user_create)
    user_list = users.add_parser("list", help="list users with their roles and live sessions")
    user_list.set_defaults(func=run_user_list)
    user_delete = users.add_parser("delete", help="delete a user (their sessions end at once)")
    user_delete.add_argument("username")
    user_delete.set_defaults(func=run_user_delete)
    user_password = users.add_parser("set-password", help="set a user's password (their sessions end at once)")
    user_password.add_argument("username")
    user_password.add_argument("--password-stdin", action="store_true",
                               help="read the password from the first line of standard input (else: prompt)")
    user_password.set_defaults(func=run_user_set_password)
    user_role = users.add_parser("set-role", help="set a user's role (in effect from their next request)")
    user_role.add_argument("username")
    user_role.add_argument("role", choices=ROLES)
    user_role.set_defaults(func=run_user_set_role)
    for p in (user_create, user_list, user_delete, user_password, user_role):
        p.add_argument("--data-dir", default=None, help="the server's data directory")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    upgrade.add_argument("--data-dir", default=None, help="the server's data directory")
    upgrade.set_defaults(func=run_db_upgrade)

    add_scan_arguments(sub)

    watch = sub.add_parser("watch", help="follow a log file (like tail -F) and post its new lines to a stream")
    watch.add_argument("file", help="the log file (followed by name: rotation and truncation are handled)")
    watch.add_argument("--server", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    watch.add_argument("--stream", required=True, help="the stream to post to")
    watch.add_argument("--key", default=None, help="an API key with the ingest scope (default: $LOGSENSE_API_KEY)")
    watch.add_argument("--state", default=None,
                       help="where the position is kept (default: .FILE.logsense-watch beside the file)")
    watch.add_argument("--from-start", action="store_true", help="a first start posts the whole file, not only new lines")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between looks at the file")
    watch.add_argument("--once", action="store_true", help="post what is new and exit")
    watch.set_defaults(func=run_watch)

    bench_help = "benchmark every detector on a labeled data set"
    add_bench_arguments, import_error = None, None
    if include_bench:
        try:
            from logsense.models.bench import add_arguments as add_bench_arguments
        except Exception as exc:  # noqa: BLE001 (any import failure disables only bench)
            import_error = exc
    if import_error is None:
        bench = sub.add_parser("bench", help=bench_help)
        bench.set_defaults(func=run_bench)
        if add_bench_arguments is not None:
            add_bench_arguments(bench)
    else:  # take any arguments, then say why bench cannot run
        bench = sub.add_parser("bench", help=bench_help, prefix_chars="\0", add_help=False)
        bench.add_argument("rest", nargs="*")
        bench.set_defaults(func=_bench_unavailable(import_error))
    return parser


SCAN_DESCRIPTION = """\
Print a report of the anomalies in FILE(s): lines scanned, anomalies (lines whose final severity is
watch or danger) and incidents (the queue's anomalies of one template close in time) with their
time span, severity, count and first line.

Offline (the default) an embedded stream learns a normal baseline and judges the files exactly as
a server stream would (RAPID line verdicts, windows cut with the stream defaults, LogGPT checks of
closed windows, severities from models.policy). The baseline is needed: --train FILE... (normal
logs of the same system, posted in train mode), or --train-fraction F (the first F of the scanned
lines are learned as normal and not judged); without either, scan refuses. LogGPT is a quick small
config by default (1 layer, 3 epochs: seconds on a CPU); --full trains the stream default. A first
LogGPT whose K cannot be calibrated (too few held-back windows) is kept back as on a server, and
RAPID's verdicts stand alone; the report says which.

Against a server (--server URL --key KEY --stream NAME) the lines are posted in 1,000-line
batches to POST /api/v1/streams/NAME/logs, the stream is flushed, the LogGPT checks are awaited,
and the anomalies of those lines are read back (GET /api/v1/anomalies?group=template): the
server's queue rows. With --train as well, a new stream NAME is created, the training files are
posted in train mode, trained, and the stream leaves train mode before the scan.

The report goes to stdout (--format json: one JSON document); progress and messages to stderr.
Loghub BGL files carry a ground-truth label as their first field: --label-field auto (the default)
cuts it off when the lines look like that, and only the report's "labels" figures read it."""


def add_scan_arguments(sub: Any) -> argparse.ArgumentParser:
    scan = sub.add_parser("scan", help="report the anomalies in log files (offline, or through a server)",
                          description=SCAN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("files", nargs="+", metavar="FILE", help="log files to judge (.gz ok), in time order")
    scan.add_argument("--train", nargs="+", metavar="FILE", default=None,
                      help="normal logs of the same system: the baseline, learned in train mode")
    scan.add_argument("--train-fraction", type=float, default=None, metavar="F",
                      help="without --train: learn the first F (0 < F < 1) of the scanned lines as normal; "
                           "only the rest is judged (offline only)")
    scan.add_argument("--format", choices=["text", "json"], default="text", help="report format (default: text)")
    scan.add_argument("--preset", default="auto", help="header format preset: auto (default), hdfs, bgl, syslog, "
                                                       "iso8601, json, ... (models.settings.FORMAT_PRESETS)")
    scan.add_argument("--session-regex", default=None, metavar="R",
                      help=r"group lines into sessions by this regex (HDFS: blk_-?\d+); default: count windows")
    scan.add_argument("--label-field", choices=["auto", "yes", "no"], default="auto",
                      help="cut off a Loghub label field (BGL's first field) before the lines are judged; auto: "
                           "when the lines look like labeled BGL")
    scan.add_argument("--full", action="store_true", help="train the stream's default LogGPT (slow on a CPU) "
                                                          "instead of the quick one")
    scan.add_argument("--seed", type=int, default=0, help="LogGPT seed (offline)")
    scan.add_argument("--server", default=None, metavar="URL", help="a running server, e.g. http://127.0.0.1:8000")
    scan.add_argument("--key", default=None, help="its API key (default: $LOGSENSE_API_KEY)")
    scan.add_argument("--stream", default=None, metavar="NAME", help="the server's stream to post to")
    scan.add_argument("--wait", type=float, default=600.0, metavar="S",
                      help="with --server: seconds to wait for the LogGPT checks and the training (default 600)")
    scan.add_argument("--limit", type=int, default=50, metavar="N",
                      help="text report: the N worst incidents (default 50; JSON lists every one)")
    scan.add_argument("--quiet", action="store_true", help="no progress bars or messages on stderr")
    scan.set_defaults(func=run_scan)
    return scan


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _prepared(settings: Settings):  # noqa: ANN202 (an Engine)
    from logsense.server.db import make_engine, upgrade_database

    upgrade_database(settings.database_url)
    return make_engine(settings.database_url)


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (`localhost` or a loopback address)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from logsense.server.app import create_app
    from logsense.server.db import upgrade_database

    try:
        settings = _settings(args, host=args.host, port=args.port, dev_mode=args.dev,
                             syslog_port=getattr(args, "syslog_port", None), role=getattr(args, "role", None))
    except ValueError as exc:  # pydantic's ValidationError: a bad setting, said in a line
        print(f"logsense serve: {exc}", file=sys.stderr)
        return 2
    if settings.dev_mode and not is_loopback(settings.host):
        print(f"logsense serve: refusing --dev on {settings.host!r}: dev mode serves the API without keys and the UI "
              "without login, so it binds only to a loopback address (127.0.0.1, ::1, localhost). Create an API key "
              "(logsense apikey create NAME) and a user (logsense user create NAME) to serve the network.",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    upgrade_database(settings.database_url)  # fail here, before binding the port, if the schema cannot be made
    # proxy_headers off: X-Forwarded-For is read by the app, from `forwarded_allow_ips` only (uvicorn trusts
    # 127.0.0.1 by default, so anyone on the machine could pick their address for the login throttle)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                proxy_headers=False)
    return 0


def run_apikey_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from logsense.server.auth import create_api_key

    engine = _prepared(_settings(args))
    with Session(engine) as session:
        key, row = create_api_key(session, args.name, args.scope, args.stream)
        print(key)
        limits = f"scopes {', '.join(row.scopes)}" + (f", streams {', '.join(row.streams)}" if row.streams else ", every stream")
        print(f"API key {row.id} ({row.name!r}, {limits}) created. Only its hash is stored: copy it now, "
              "it cannot be shown again. Send it as the X-API-Key header.", file=sys.stderr)
    engine.dispose()
    return 0


def run_apikey_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session, select

    from logsense.server.tables import ApiKey

    engine = _prepared(_settings(args))
    with Session(engine) as session:
        rows = session.exec(select(ApiKey).order_by(ApiKey.id)).all()
        print(f"{'id':>4}  {'name':<24} {'prefix':<12} {'created (UTC)':<20} {'last used (UTC)':<20} {'state':<8} scopes")
        for r in rows:
            used = r.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if r.last_used_at else "never"
            where = f" on {','.join(r.streams)}" if r.streams else ""
            print(f"{r.id:>4}  {r.name:<24} {r.prefix + '…':<12} {r.created_at:%Y-%m-%d %H:%M:%S}  {used:<20} "
                  f"{'revoked' if r.revoked else 'active':<8} {','.join(r.scopes)}{where}")
    engine.dispose()
    return 0


def run_apikey_revoke(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from logsense.server.auth import revoke_api_key

    engine = _prepared(_settings(args))
    with Session(engine) as session:
        found = revoke_api_key(session, args.id)
    engine.dispose()
    print(f"API key {args.id} revoked" if found else f"no API key with id {args.id}", file=sys.stderr)
    return 0 if found else 1


def _read_password(args: argparse.Namespace) -> str:
    """The new password: the first line of stdin (`--password-stdin`), else typed twice; checked."""
    import getpass

    from logsense.server.users import check_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
        if getpass.getpass("Repeat it: ") != password:
            raise ValueError("the passwords differ")
    return check_password(password)


def _user_command(name: str, args: argparse.Namespace, action: Callable[[Any], str]) -> int:
    """Run `action(session)` on the database; its message on stderr, or `logsense user NAME: why` and 1."""
    from sqlmodel import Session

    engine = _prepared(_settings(args))
    try:
        with Session(engine) as session:
            message = action(session)
    except ValueError as exc:
        print(f"logsense user {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(message, file=sys.stderr)
    return 0


def run_user_create(args: argparse.Namespace) -> int:
    from logsense.server.users import check_username, create_user

    try:
        check_username(args.username)
        password = _read_password(args)
    except ValueError as exc:
        print(f"logsense user create: {exc}", file=sys.stderr)
        return 1

    def create(session: Any) -> str:
        row = create_user(session, args.username, password, args.role)
        return f"user {row.id} ({row.username!r}, role {row.role}) created; log in at the web UI's /login"

    return _user_command("create", args, create)


def run_user_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from logsense.server.users import list_users, live_sessions

    engine = _prepared(_settings(args))
    with Session(engine) as session:
        print(f"{'id':>4}  {'username':<24} {'role':<9} {'created (UTC)':<20} sessions")
        for u in list_users(session):
            print(f"{u.id:>4}  {u.username:<24} {u.role:<9} {u.created_at:%Y-%m-%d %H:%M:%S}  {live_sessions(session, u.id)}")
    engine.dispose()
    return 0


def run_user_delete(args: argparse.Namespace) -> int:
    from logsense.server.users import delete_user

    def delete(session: Any) -> str:
        delete_user(session, args.username)
        return f"user {args.username!r} deleted; their sessions ended"

    return _user_command("delete", args, delete)


def run_user_set_password(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from logsense.server.users import get_user, set_password

    engine = _prepared(_settings(args))
    try:
        with Session(engine) as session:  # no prompt for a user who is not there
            known = get_user(session, args.username) is not None
    finally:
        engine.dispose()
    try:
        if not known:
            raise ValueError(f"there is no user named {args.username!r}")
        password = _read_password(args)
    except ValueError as exc:
        print(f"logsense user set-password: {exc}", file=sys.stderr)
        return 1

    def change(session: Any) -> str:
        set_password(session, args.username, password)
        return f"password of {args.username!r} changed; their sessions ended (they log in again)"

    return _user_command("set-password", args, change)


def run_user_set_role(args: argparse.Namespace) -> int:
    from logsense.server.users import count_admins, set_role

    def change(session: Any) -> str:
        row = set_role(session, args.username, args.role)
        note = "" if count_admins(session) else " (no admin is left: `logsense user set-role NAME admin` makes one)"
        return f"{row.username!r} is now {row.role}{note}"

    return _user_command("set-role", args, change)


def run_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from logsense.server.db import upgrade_database

    settings = _settings(args)
    upgrade_database(settings.database_url)
    print(f"database at head: {make_url(settings.database_url).render_as_string(hide_password=True)}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    if getattr(args, "cluster", False):  # starts PostgreSQL, Redis and servers of every role
        from logsense.server.bench.cluster import ClusterBenchConfig, run_cluster_bench

        cfg = ClusterBenchConfig(rounds=1 if args.quick else args.cluster_rounds, clients=args.cluster_clients,
                                 processors=[1] if args.quick else args.cluster_processors, seed=args.seed)
        return run_cluster_bench(args.out, cfg, Path(args.data_dir) if args.data_dir else None,
                                 args.database_url, args.broker_url)
    if getattr(args, "search", False):  # likewise
        from logsense.server.bench.search import SearchBenchConfig, run_search_bench

        lines = 20_000 if args.quick else args.search_lines
        return run_search_bench(args.out, SearchBenchConfig(lines=lines, repeats=3 if args.quick else 20, seed=args.seed))
    if getattr(args, "capacity", False):  # drives a real server: lives beside it, not in models.bench
        from logsense.server.bench.capacity import CapacityConfig, run_capacity

        cfg = CapacityConfig(lines=args.capacity_lines, rate=args.capacity_rate, clients=args.capacity_clients,
                             seed=args.seed)
        if args.quick:  # a smoke run of every phase, not a result
            cfg = CapacityConfig(train_lines=3000, train_distinct=800, novel_batches=3, lines=12_000,
                                 rate=args.capacity_rate, clients=args.capacity_clients, seed=args.seed)
        return run_capacity(args.out, cfg)
    from logsense.models.bench import run

    return run(args)


def run_scan(args: argparse.Namespace) -> int:
    import json
    import os

    from logsense.models.scan import ScanConfig, format_report, read_files
    from logsense.models.settings import FORMAT_PRESETS

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    def fail(message: str) -> int:
        print(f"logsense scan: {message}", file=sys.stderr)
        return 2

    if args.preset not in FORMAT_PRESETS:
        return fail(f"unknown --preset {args.preset!r}; known: {', '.join(FORMAT_PRESETS)}")
    remote = [n for n in ("server", "stream") if getattr(args, n)]
    if remote and len(remote) < 2:
        return fail("against a server give --server URL, --stream NAME and --key KEY (or $LOGSENSE_API_KEY)")
    key = args.key or os.environ.get("LOGSENSE_API_KEY")
    if remote and not key:
        return fail("--server needs --key KEY (or $LOGSENSE_API_KEY)")
    if args.train and args.train_fraction is not None:
        return fail("give --train or --train-fraction, not both")
    if not remote and not args.train and args.train_fraction is None:
        return fail("a normal baseline is needed: give --train FILE... (normal logs of the same system, learned in "
                    "train mode) or --train-fraction F (the first F of the scanned lines are learned as normal)")
    if args.train_fraction is not None and (remote or not 0 < args.train_fraction < 1):
        return fail("--train-fraction takes a number between 0 and 1, and only offline")
    try:
        lines = read_files(args.files)
        train = read_files(args.train) if args.train else None
    except (FileNotFoundError, OSError) as exc:
        return fail(str(exc))
    if not lines:
        return fail("the files hold no lines")
    cfg = ScanConfig(preset=args.preset, session_regex=args.session_regex, full=args.full,
                     label_field=args.label_field, train_fraction=args.train_fraction, seed=args.seed)
    try:
        if remote:
            from logsense.server.client import Client
            from logsense.server.scan import scan_server

            client = Client(0, key, timeout=max(60.0, args.wait))
            client.base = args.server.rstrip("/")
            report = scan_server(client, args.stream, lines, train, cfg, wait=args.wait, progress=not args.quiet,
                                 say=say)
        else:
            from logsense.models.embedding import load_embedder
            from logsense.models.scan import scan

            say(f"logsense scan: {len(lines)} lines to judge" + (f", {len(train)} to learn" if train else "")
                + " (offline, embedded model); loading the embedder")
            report = scan(lines, train, cfg, load_embedder(), progress=not args.quiet, say=say)
    except RuntimeError as exc:  # server.scan.ScanError: a scan against a server that cannot go on
        return fail(str(exc))
    except ValueError as exc:  # offline: no baseline, no training windows, bad settings
        return fail(str(exc))
    if args.format == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report, limit=max(0, args.limit)))
    return 0


def run_watch(args: argparse.Namespace) -> int:
    import os
    import signal
    from pathlib import Path
    from urllib.parse import quote

    from logsense.server.client import Client
    from logsense.server.watch import Follower, idempotency_key, watch

    key = args.key or os.environ.get("LOGSENSE_API_KEY")
    if not key:
        print("logsense watch: give --key KEY (or $LOGSENSE_API_KEY), a key with the ingest scope", file=sys.stderr)
        return 2
    path = Path(args.file)
    state = Path(args.state) if args.state else path.with_name(f".{path.name}.logsense-watch")
    client = Client(0, key, timeout=120)
    client.base = args.server.rstrip("/")
    url = f"/api/v1/streams/{quote(args.stream, safe='')}/logs"

    def post(batch) -> None:  # noqa: ANN001
        code, body = client.call("POST", url, {"lines": batch.lines}, headers={"Idempotency-Key": idempotency_key(batch)})
        if code >= 300 and code != 207:
            raise RuntimeError(f"{code} {body}")

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    follower = Follower(path, state, from_start=args.from_start)
    print(f"logsense watch: following {path} into stream {args.stream!r} at {client.base} (position kept in {state})",
          file=sys.stderr)
    try:
        n = watch(follower, post, interval=args.interval, once=args.once, stop=lambda: bool(stopping),
                  say=lambda m: print(m, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        n = None
    finally:
        follower.close()
    if n is not None:
        print(f"logsense watch: {n} lines posted", file=sys.stderr)
    return 0


def _bench_unavailable(exc: Exception) -> Callable[[argparse.Namespace], int]:
    def fail(_args: argparse.Namespace) -> int:
        print(f"logsense bench is unavailable: logsense.models.bench failed to import: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2

    return fail


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(include_bench=bool(argv) and argv[0] == "bench").parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
