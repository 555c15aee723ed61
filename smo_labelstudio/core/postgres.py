"""The few PostgreSQL operations the stack needs: parse a URL, create a database (from a template)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from smo_labelstudio.core.errors import ConfigError


@dataclass(frozen=True)
class PgUrl:
    """A parsed `postgresql://user[:password]@host[:port]/dbname` URL."""

    user: str
    password: str
    host: str
    port: int
    dbname: str

    @classmethod
    def parse(cls, url: str) -> PgUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.path.strip("/"):
            raise ConfigError(f"expected postgresql://user@host:port/dbname, got {redact(url)!r}")
        return cls(
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            dbname=parts.path.strip("/"),
        )

    def with_db(self, dbname: str) -> PgUrl:
        return replace(self, dbname=dbname)

    def conninfo(self, dbname: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            user=self.user,
            password=self.password or None,
            host=self.host,
            port=self.port,
            dbname=dbname or self.dbname,
        )

    def sqlalchemy_async(self) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql+asyncpg://{auth}@{self.host}:{self.port}/{self.dbname}"

    def display(self) -> str:
        """The URL without its password, for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _admin(pg: PgUrl) -> psycopg.Connection:
    return psycopg.connect(pg.conninfo("postgres"), autocommit=True, connect_timeout=10)


def database_exists(pg: PgUrl, dbname: str | None = None) -> bool:
    with _admin(pg) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (dbname or pg.dbname,)).fetchone()
    return row is not None


def create_database(pg: PgUrl, dbname: str | None = None, template: str | None = None) -> None:
    query = sql.SQL("create database {}").format(sql.Identifier(dbname or pg.dbname))
    if template:
        query += sql.SQL(" template {}").format(sql.Identifier(template))
    with _admin(pg) as conn:
        conn.execute(query)


def rename_database(pg: PgUrl, old: str, new: str) -> None:
    with _admin(pg) as conn:
        conn.execute(sql.SQL("alter database {} rename to {}").format(sql.Identifier(old), sql.Identifier(new)))


def drop_database(pg: PgUrl, dbname: str | None = None) -> None:
    with _admin(pg) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname or pg.dbname)))


def ensure_extension(pg: PgUrl, extension: str) -> None:
    with psycopg.connect(pg.conninfo(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create extension if not exists {}").format(sql.Identifier(extension)))
