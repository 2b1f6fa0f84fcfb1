"""Alembic environment: the URL comes from `server.db.alembic_config` (or the LOGSENSE_* settings).

Runs from `upgrade_database()` at start, or by hand: `alembic upgrade head` in the repo root.
"""

from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import logsense.server.tables  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
if config.config_file_name is not None:  # run by hand with alembic.ini: use its logging setup
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = SQLModel.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from logsense.server.settings import Settings

        url = Settings().database_url
    return url


def _render_item(type_: str, obj, autogen_context):  # noqa: ANN001
    """Render server.tables.UtcDateTime as plain sa.DateTime(): migrations must not import app code."""
    if type_ == "type" and isinstance(obj, logsense.server.tables.UtcDateTime):
        return "sa.DateTime()"
    return False


def _configure(**kwargs) -> None:
    url = kwargs.pop("url", None)
    dialect = url.split(":", 1)[0] if url else kwargs["connection"].dialect.name
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=dialect.startswith("sqlite"),  # SQLite alters tables by copying them
        compare_type=True,
        render_item=_render_item,
        url=url,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (a test) lends its own connection
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from logsense.server.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":  # nodes of a cluster start together: one upgrades
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(740417)")
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
