"""Database engine, sessions and the declarative base.

One engine per application, bound in the app factory (``db.init_app(app)``). A
request or CLI command gets one session (``db.session``), closed at teardown. The
view layer commits once, through :func:`Database.commit`; services only add and flush.

SQLite runs in WAL mode with foreign keys on. Its transactions are begun explicitly:
requests that change data (POST, PUT, PATCH, DELETE, unless the route is declared
read-only) and CLI commands start with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the database lock instead of
failing on a lock upgrade; reads begin deferred. PostgreSQL uses row locks where a
service needs one (see :func:`lock_row`).

The connection pool is sized from the process's request threads (``REQUEST_THREADS``,
set for each gunicorn worker from its ``--threads`` by ``release_server.gunicorn_conf``):
at most ``REQUEST_THREADS + DATABASE_POOL_EXTRA`` connections (the extra ones for the
process's own background threads, such as the last-seen writer), of which
``DATABASE_POOL_SIZE`` stay open when idle. So no request thread ever waits for a
connection another thread of its process holds. On PostgreSQL every process may open that
many, so ``max_connections`` must cover ``WORKERS x (THREADS + DATABASE_POOL_EXTRA)`` on
every node, plus the worker process and the command line (README, "Production layout").
"""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_EXTRA = 4


def pool_limits(threads: int, pool_size: int = DEFAULT_POOL_SIZE, extra: int = DEFAULT_POOL_EXTRA) -> tuple[int, int]:
    """(pool_size, max_overflow) for a process of ``threads`` request threads: ``threads + extra`` at most."""
    most = max(1, threads) + max(0, extra)
    kept = max(1, min(pool_size, most))
    return kept, most - kept


def make_engine(url: str, echo: bool = False, *, threads: int = 1, pool_size: int = DEFAULT_POOL_SIZE,
                pool_extra: int = DEFAULT_POOL_EXTRA) -> Engine:
    """The engine for ``url``; its pool holds at most ``threads + pool_extra`` connections."""
    url = normalise_url(url)
    kept, overflow = pool_limits(threads, pool_size, pool_extra)
    if url.startswith("sqlite"):
        pool: dict[str, Any] = {}
        if ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:"):
            pool = {"pool_size": kept, "max_overflow": overflow}
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin) instead of pysqlite.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            if options.get("single_read", False):
                return  # one SELECT, atomic on its own (see Database.read_connection)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate", False) else "BEGIN")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=kept, max_overflow=overflow)


def connection_budget(engine: Engine, processes: int, threads: int, extra: int = DEFAULT_POOL_EXTRA
                      ) -> tuple[int, int] | None:
    """(connections ``processes`` servers of ``threads`` threads may open, what PostgreSQL allows).

    What PostgreSQL allows is ``max_connections`` less ``superuser_reserved_connections``;
    None on SQLite (no server, no limit)."""
    if engine.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    with engine.connect() as conn:
        most = int(conn.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
    return processes * (max(1, threads) + max(0, extra)), most - reserved


def check_connection_budget(workers: int, threads: int) -> str | None:
    """A warning when this node's gunicorn workers may open more connections than PostgreSQL allows."""
    import logging

    try:
        from sqlalchemy.pool import NullPool

        from . import instance_path_default
        from .config import load_config

        config = load_config(instance_path_default())
        if not str(config.get("DATABASE_URL") or "").startswith(("postgres", "postgresql")):
            return None  # SQLite (the default): no connection limit
        engine = create_engine(normalise_url(config["DATABASE_URL"]), poolclass=NullPool)
        try:
            budget = connection_budget(engine, workers, threads, int(config.get("DATABASE_POOL_EXTRA",
                                                                                DEFAULT_POOL_EXTRA)))
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - a check before serving must not stop the server
        logging.getLogger(__name__).debug("connection budget not checked: %s", e)
        return None
    if budget is None or budget[0] <= budget[1]:
        return None
    return (f"PostgreSQL allows {budget[1]} connections but {workers} workers x {threads} threads may open "
            f"{budget[0]} from this node alone: raise max_connections, lower THREADS or WORKERS, or use PgBouncer")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class Database:
    """The application's database handle, bound with :meth:`init_app`."""

    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"], app.config.get("DATABASE_ECHO", False),
                             threads=int(app.config.get("REQUEST_THREADS", 1)),
                             pool_size=int(app.config.get("DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE)),
                             pool_extra=int(app.config.get("DATABASE_POOL_EXTRA", DEFAULT_POOL_EXTRA)))
        app.extensions["db_engine"] = engine
        app.extensions["db_sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)
        # one statement, no transaction around it: no BEGIN and ROLLBACK round trips (see read_connection)
        app.extensions["db_read_engine"] = (engine.execution_options(single_read=True) if is_sqlite(engine)
                                            else engine.execution_options(isolation_level="AUTOCOMMIT"))
        app.extensions["db_write_sessionmaker"] = sessionmaker(
            bind=engine.execution_options(sqlite_immediate=True) if is_sqlite(engine) else engine,
            expire_on_commit=False)
        app.teardown_appcontext(self._teardown)

    @property
    def engine(self) -> Engine:
        return current_app.extensions["db_engine"]

    @property
    def session(self) -> Session:
        sess = g.get("_db_session")
        if sess is None:
            writing = g.get("_db_write")
            if writing is None:
                writing = not has_request_context() or request.method in ("POST", "PUT", "PATCH", "DELETE")
            key = "db_write_sessionmaker" if writing else "db_sessionmaker"
            sess = current_app.extensions[key]()
            g._db_session = sess
        return sess

    def new_session(self, *, write: bool = True) -> Session:
        """A session outside the request's own (for background work); the caller closes it."""
        key = "db_write_sessionmaker" if write else "db_sessionmaker"
        return current_app.extensions[key]()

    def read_connection(self) -> Connection:
        """A connection for one read statement outside any transaction; the caller closes it.

        A single SELECT is consistent on its own, so the hot path's look-ups (an
        installation's credentials on a cache miss) skip the session and the BEGIN and
        ROLLBACK around the query: on PostgreSQL one round trip instead of three. Never
        for more than one statement that must agree with another."""
        return current_app.extensions["db_read_engine"].connect()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        sess = g.get("_db_session")
        if sess is not None:
            sess.rollback()

    @staticmethod
    def _teardown(_exc: BaseException | None) -> None:
        sess = g.pop("_db_session", None)
        if sess is not None:
            sess.close()


db = Database()


def lock_row(session: Session, model: type, pk: Any) -> Any:
    """Fetch one row holding a write lock on it until the transaction ends.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite: the transaction already holds the
    database write lock (``BEGIN IMMEDIATE``), so a plain read is enough.
    """
    from sqlalchemy import select

    stmt = select(model).where(model.id == pk)
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=model)
    return session.execute(stmt).scalar_one_or_none()
