"""Schema versions, for ``capigate migrate`` and ``capigate serve``'s start-up check: the
version a store's database is at, the version this capigate knows, and the steps between.

Both backends apply their pending steps when a node opens the store; ``capigate migrate
--apply`` applies them ahead of a rolling upgrade, and a node refuses to start on a database
newer than it knows (an old node must not write a schema it does not understand).
"""

from __future__ import annotations

from capigate.errors import StoreError
from capigate.store import open_store
from capigate.store.base import SchemaStatus
from capigate.store.sqlite.schema import check_sqlite_path

__all__ = ["SchemaStatus", "apply_migrations", "check_sqlite_path", "describe", "schema_status"]


async def schema_status(url_or_path: str) -> SchemaStatus:
    """Where the store's database is, without changing it. StoreError if it is unreachable."""
    return await open_store(url_or_path).schema_status()


async def apply_migrations(url_or_path: str) -> SchemaStatus:
    """Apply the pending steps (as a node's start would); returns the status afterwards."""
    before = await schema_status(url_or_path)
    if before.too_new:
        raise StoreError(before.refusal())
    await open_store(url_or_path).migrate()
    return await schema_status(url_or_path)


def describe(status: SchemaStatus, *, applied: int | None = None, apply_command: str | None = None) -> list[str]:
    """The lines ``capigate migrate`` prints; ``apply_command``: the command that applies the
    pending steps to this same store (None: the same command as this one, with --apply)."""
    lines = [f"store: {status.store}"]
    if applied is not None:
        lines.append(f"applied {applied} step(s)")
    lines.append(f"schema version: {status.version or 'none yet'} (this capigate knows up to {status.latest})")
    if status.too_new:
        return lines
    if not status.pending:
        lines.append("up to date")
        return lines
    lines.append("pending steps:")
    lines += [f"  {version}  {text}" for version, text in status.pending]
    how = f"`{apply_command}`" if apply_command else "this command and --apply"
    lines.append(f"apply them with {how} (`capigate serve` applies them at start too)")
    return lines
