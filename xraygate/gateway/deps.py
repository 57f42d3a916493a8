"""Dependencies shared by the gateway's routers: settings, database sessions, object store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.storage import ObjectStore, store_from_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def read_db(settings: SettingsDep) -> Iterator[Session]:
    with db.read_session(db.get_engine(settings.resolved_database_url)) as session:
        yield session


ReadDb = Annotated[Session, Depends(read_db)]


def object_store(request: Request, settings: SettingsDep) -> ObjectStore:
    """One store per application (S3 clients are reused across requests)."""
    store = getattr(request.app.state, "store", None)
    if store is None:
        store = store_from_settings(settings)
        request.app.state.store = store
    return store


StoreDep = Annotated[ObjectStore, Depends(object_store)]
