"""Ingestion: parse → split → hash → embed → store, idempotent by content hash, versions swapped safely."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lib.core import spans
from lib.core.identity import Identity
from lib.core.tables import Collection, Document, utcnow
from lib.documents.embeddings import LOCAL_MODEL
from lib.documents.names import MAX_NAME_CHARS, FileNameError, safe_file_name
from lib.documents.ocr import OcrSettings
from lib.documents.parsing import MB, SUPPORTED, Page, ParseError, format_mb, parse_file
from lib.documents.screening import looks_like_injection  # also imported from here by older code
from lib.documents.vectorstore import get_all, open_store

Progress = Callable[[dict[str, Any]], None]
EMBED_BATCH = 64


class CollectionError(ValueError):
    """A collection name is invalid, taken or unknown."""


class UploadError(ValueError):
    """An upload refused before its bytes are read or queued (over the size limit, no free name)."""


class DocumentAccessError(ValueError):
    """Only a document's uploader or an admin may delete or replace it."""


@dataclass(frozen=True)
class ChunkingSettings:
    """How documents are split; MiniLM embeds only ~256 tokens (~1,000 characters) of a chunk."""

    chunk_size: int = 800
    chunk_overlap: int = 120
    max_file_bytes: int = 50 * 1024 * 1024
    title_headers: bool = True  # embed and index each chunk with its document's title in front


@dataclass
class FileOutcome:
    """What indexing one file did."""

    name: str
    status: str  # indexed, unchanged, failed
    document_id: int | None = None
    version: int = 0
    chunks: int = 0
    pages: int | None = None
    error: str | None = None
    flagged: int = 0


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document with its citation coordinates."""

    text: str
    page: int | None
    index: int
    flagged: bool = False


def title_header(name: str) -> str:
    """`Employee handbook 2024: ` from `employee_handbook_2024.pdf`: context that a chunk alone lacks."""
    stem = PurePath(name).stem if PurePath(name).suffix.lower() in SUPPORTED else PurePath(name).name
    return re.sub(r"[_]+", " ", stem).strip() + ": "


def split_pages(pages: list[Page], chunking: ChunkingSettings) -> list[Chunk]:
    """Chunks of every page, numbered across the document, each keeping its page."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunking.chunk_size,
        chunk_overlap=chunking.chunk_overlap,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
    )
    chunks: list[Chunk] = []
    for page in pages:
        for text in splitter.split_text(page.text):
            text = text.strip()
            if text:
                chunks.append(Chunk(text, page.number, len(chunks), looks_like_injection(text)))
    return chunks


def check_embedding_model(collection: Collection, model: str) -> None:
    """CollectionError when the collection holds vectors of another embedding model."""
    if collection.embedding_model != model:
        raise CollectionError(
            f"Collection {collection.name!r} was indexed with {collection.embedding_model}, but the "
            f"workbench now embeds with {model}. Set WORKBENCH_EMBEDDING_MODEL back, or create a "
            "new collection and upload the documents again."
        )


def chroma_name_for(name: str) -> str:
    """A valid, stable Chroma collection name for a user-facing collection name."""
    return "wb_" + hashlib.sha256(name.encode()).hexdigest()[:24]


def create_collection(engine: Engine, name: str, embedding_model: str = LOCAL_MODEL) -> Collection:
    """Create a collection for vectors of `embedding_model`; CollectionError if the name is empty or taken."""
    name = name.strip()
    if not name or len(name) > 100:
        raise CollectionError("A collection needs a name of 1 to 100 characters.")
    with Session(engine, expire_on_commit=False) as s, s.begin():
        if s.scalar(select(Collection).where(Collection.name == name)):
            raise CollectionError(f"A collection called {name!r} already exists.")
        col = Collection(
            name=name, chroma_name=chroma_name_for(f"{name}:{utcnow().timestamp()}"), embedding_model=embedding_model
        )
        s.add(col)
    return col


def get_collection(engine: Engine, name: str, create: bool = False, embedding_model: str = LOCAL_MODEL) -> Collection:
    """The collection called `name` (created on demand if `create`)."""
    with Session(engine, expire_on_commit=False) as s:
        col = s.scalar(select(Collection).where(Collection.name == name))
    if col is None:
        if create:
            return create_collection(engine, name, embedding_model)
        raise CollectionError(f"There is no collection called {name!r}.")
    return col


def list_collections(engine: Engine) -> list[Collection]:
    """All collections by name."""
    with Session(engine, expire_on_commit=False) as s:
        return list(s.scalars(select(Collection).order_by(Collection.name)))


def rename_collection(engine: Engine, old: str, new: str) -> None:
    """Rename a collection (its Chroma name stays, so nothing is re-indexed)."""
    new = new.strip()
    if not new:
        raise CollectionError("The new name is empty.")
    with Session(engine, expire_on_commit=False) as s, s.begin():
        if s.scalar(select(Collection).where(Collection.name == new)):
            raise CollectionError(f"A collection called {new!r} already exists.")
        col = s.scalar(select(Collection).where(Collection.name == old))
        if col is None:
            raise CollectionError(f"There is no collection called {old!r}.")
        col.name = new


def delete_collection(engine: Engine, client: Any, name: str, actor: Identity) -> None:
    """Delete a collection, its documents, their vectors and kept originals.

    DocumentAccessError unless `actor` is an admin or uploaded every document in it.
    """
    col = get_collection(engine, name)
    with Session(engine, expire_on_commit=False) as s:
        docs = s.execute(select(Document.uploaded_by, Document.original_path).where(Document.collection_id == col.id))
        rows = docs.all()
    if not all(may_change(uploaded_by, actor) for uploaded_by, _ in rows):
        raise DocumentAccessError(
            f"{name} holds documents other people uploaded; only an admin may delete the collection."
        )
    try:
        client.delete_collection(col.chroma_name)
    except Exception as exc:  # already gone from Chroma: nothing left to delete there
        if "does not exist" not in str(exc).lower() and "not found" not in str(exc).lower():
            raise
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.delete(s.get(Collection, col.id))
    _remove_unshared_originals(engine, {path for _, path in rows if path})


def _remove_unshared_originals(engine: Engine, paths: set[str]) -> None:
    """Delete kept originals no document points at any more (they are named by content hash, so may be shared)."""
    if not paths:
        return
    with Session(engine, expire_on_commit=False) as s:
        shared = set(s.scalars(select(Document.original_path).where(Document.original_path.in_(paths))))
    for path in paths - shared:
        Path(path).unlink(missing_ok=True)


@dataclass
class Indexer:
    """Indexes files into one collection; safe to call again with the same bytes (no work is repeated)."""

    engine: Engine
    client: Any
    embeddings: Embeddings
    originals_dir: Path
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    embedding_model: str = LOCAL_MODEL
    ocr: OcrSettings | None = field(default_factory=OcrSettings)  # None: scans are refused, not read

    def index_file(
        self, collection: Collection, name: str, data: bytes, progress: Progress | None = None, force: bool = False
    ) -> FileOutcome:
        """Index one file; failures are recorded on the document and returned, never half-applied.

        The same bytes again do no work unless `force` (re-index, e.g. after new chunk settings).
        """
        # one trace per file (its embedding calls inside it); the file name is the user's text, so not on the span
        with spans.span("documents.index_file", bytes=len(data), force=force) as current:
            outcome = self._index_file(collection, name, data, progress, force)
            current.set_attributes({spans.STATUS: outcome.status, "workbench.chunks": outcome.chunks or 0})
            if outcome.status == "failed":
                spans.mark_error(current, "index_failed")
            return outcome

    def _index_file(
        self, collection: Collection, name: str, data: bytes, progress: Progress | None, force: bool
    ) -> FileOutcome:
        report = progress or (lambda _: None)
        check_embedding_model(collection, self.embedding_model)
        name = PurePath(name).name
        digest = hashlib.sha256(data).hexdigest()
        doc = self._document(collection, name)
        if doc.status == "indexed" and doc.content_hash == digest and not force:
            report({"status": "unchanged", "chunks_total": doc.chunks, "chunks_embedded": doc.chunks})
            return FileOutcome(name, "unchanged", doc.id, doc.version, doc.chunks, doc.pages)
        new_version = doc.version + 1
        self._set_status(doc.id, "indexing")
        store = open_store(self.client, collection.chroma_name, self.embeddings)
        try:
            pages = parse_file(
                name,
                data,
                self.chunking.max_file_bytes,
                self.ocr,
                lambda n, of: report({"status": f"OCR {n}/{of} pages"}),
            )
            ocr_pages = {p.number for p in pages if p.ocr}
            original = self._save_original(digest, name, data)  # kept first, so a crashed job can be retried
            report({"status": "parsed", "pages": len(pages), "original": str(original)})
            chunks = split_pages(pages, self.chunking)
            ids = [f"d{doc.id}-v{new_version}-c{c.index}" for c in chunks]
            header = title_header(name) if self.chunking.title_headers else ""
            for start in range(0, len(chunks), EMBED_BATCH):
                batch = chunks[start : start + EMBED_BATCH]
                store.add_texts(
                    [header + c.text for c in batch],
                    metadatas=[
                        {
                            "document_id": doc.id,
                            "document": name,
                            "version": new_version,
                            "page": c.page if c.page is not None else -1,
                            "chunk_index": c.index,
                            "flagged": c.flagged,
                            "ocr": c.page in ocr_pages,
                            "header_len": len(header),
                        }
                        for c in batch
                    ],
                    ids=ids[start : start + EMBED_BATCH],
                )
                report({"status": "embedding", "chunks_total": len(chunks), "chunks_embedded": start + len(batch)})
        except Exception as exc:
            self._discard_version(store, doc.id, new_version)
            reason = str(exc) if isinstance(exc, ParseError) else f"Indexing failed: {type(exc).__name__}: {exc}"
            self._mark_failed(doc.id, reason)
            report({"status": "failed", "error": reason})
            return FileOutcome(name, "failed", doc.id, doc.version, error=reason)
        page_count = max((p.number or 0) for p in pages) or None
        flagged = sum(c.flagged for c in chunks)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = s.get(Document, doc.id)
            if row is not None:
                row.version, row.content_hash, row.chunks, row.pages = new_version, digest, len(chunks), page_count
                row.size_bytes, row.status, row.error, row.indexed_at = len(data), "indexed", None, utcnow()
                row.flagged_chunks, row.original_path = flagged, str(original)
        if row is None:  # deleted (by another user or process) while this version was embedded
            self._discard_version(store, doc.id, new_version)
            reason = f"{name} was deleted while it was being indexed; upload it again to keep it."
            report({"status": "failed", "error": reason})
            return FileOutcome(name, "failed", error=reason)
        # Only now, with the new version stored and recorded, do the old version's chunks go.
        store.delete(where={"$and": [{"document_id": doc.id}, {"version": {"$ne": new_version}}]})
        report({"status": "indexed", "chunks_total": len(chunks), "chunks_embedded": len(chunks)})
        return FileOutcome(name, "indexed", doc.id, new_version, len(chunks), page_count, flagged=flagged)

    def _document(self, collection: Collection, name: str) -> Document:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            doc = s.scalar(select(Document).where(Document.collection_id == collection.id, Document.name == name))
            if doc is None:
                doc = Document(collection_id=collection.id, name=name, status="queued", version=0)
                s.add(doc)
                s.flush()
            return doc

    def _save_original(self, digest: str, name: str, data: bytes) -> Path:
        self.originals_dir.mkdir(parents=True, exist_ok=True)
        path = self.originals_dir / f"{digest}{PurePath(name).suffix.lower()}"
        if not path.exists():
            tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: never a half-written original
        return path

    def _discard_version(self, store, document_id: int, version: int) -> None:
        store.delete(where={"$and": [{"document_id": document_id}, {"version": version}]})

    def _set_status(self, document_id: int, status: str) -> None:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = s.get(Document, document_id)
            if row is not None:  # a document deleted meanwhile has no status to set
                row.status = status

    def _mark_failed(self, document_id: int, reason: str) -> None:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = s.get(Document, document_id)
            if row is not None:
                row.status, row.error = "failed", reason


def may_change(uploaded_by: str | None, actor: Identity) -> bool:
    """Whether `actor` may delete or replace a document uploaded by `uploaded_by`: its uploader, or an admin.

    Documents from before uploaders were recorded (None) are the admins' to change."""
    return "admin" in actor.roles or (uploaded_by is not None and uploaded_by == actor.owner)


def may_change_document(engine: Engine, document_id: int, actor: Identity) -> bool:
    """`may_change` for a stored document (False when it is gone)."""
    with Session(engine, expire_on_commit=False) as s:
        doc = s.get(Document, document_id)
    return doc is not None and may_change(doc.uploaded_by, actor)


def check_upload_size(name: str, size: int, max_bytes: int) -> None:
    """UploadError when an upload's size is over the limit, so its bytes are never read into memory."""
    if size > max_bytes:
        raise UploadError(
            f"{name} is {size / MB:.1f} MB, over the {format_mb(max_bytes)} MB limit. "
            "Split it, or ask an admin to raise WORKBENCH_MAX_FILE_MB."
        )


@dataclass(frozen=True)
class UploadClaim:
    """The name an upload is indexed under, and whether it replaces a document of that name."""

    name: str
    replaces: bool
    asked: str  # the name it was uploaded with (made safe)

    def note(self) -> str | None:
        """What a user should be told: their file became a document of another name."""
        if self.name == self.asked:
            return None
        return f"{self.asked} is another user's document here, so yours was kept as {self.name}."


def _name_variants(name: str, tries: int = 100) -> list[str]:
    stem, suffix = (name.rsplit(".", 1)[0], "." + name.rsplit(".", 1)[1]) if "." in name.strip(".") else (name, "")
    variants = [name]
    for i in range(2, tries + 2):
        tag = f" ({i})"
        variants.append(stem[: MAX_NAME_CHARS - len(tag) - len(suffix)] + tag + suffix)
    return variants


def claim_upload(
    engine: Engine, collection: Collection, name: str, actor: Identity, replace: bool = False
) -> UploadClaim:
    """Decide the document an upload goes to, recording `actor` as the uploader of a new one.

    The file's safe name (FileNameError if nothing is left of it) when no document has it, when `actor` uploaded
    that document, or when `actor` may change it (an admin) and chose `replace`; otherwise a new document called
    `name (2).ext` (or the next free number): nobody replaces another user's document by uploading a file of the
    same name.
    """
    asked = safe_file_name(name)
    for candidate in _name_variants(asked):
        try:
            with Session(engine, expire_on_commit=False) as s, s.begin():
                doc = s.scalar(
                    select(Document).where(Document.collection_id == collection.id, Document.name == candidate)
                )
                if doc is None:
                    s.add(
                        Document(
                            collection_id=collection.id,
                            name=candidate,
                            status="queued",
                            version=0,
                            uploaded_by=actor.owner,
                        )
                    )
                    return UploadClaim(candidate, False, asked)
                if doc.uploaded_by == actor.owner or (replace and may_change(doc.uploaded_by, actor)):
                    return UploadClaim(candidate, True, asked)
        except IntegrityError:  # another upload took this name a moment ago: try the next
            continue
    raise UploadError(f"There are too many documents called {asked} in {collection.name}; rename the file.")


def claim_uploads(
    engine: Engine,
    collection: Collection,
    uploads: list[tuple[str, int]],
    actor: Identity,
    replace: bool,
    max_bytes: int,
) -> list[UploadClaim]:
    """`claim_upload` for each (name, size) of an upload, after checking every size (nothing is claimed when one
    file is too large); UploadError says which file and why."""
    for name, size in uploads:
        check_upload_size(name, size, max_bytes)
    try:
        return [claim_upload(engine, collection, name, actor, replace) for name, _ in uploads]
    except FileNameError as exc:
        raise UploadError(str(exc)) from exc


def delete_document(engine: Engine, client: Any, embeddings: Embeddings, document_id: int, actor: Identity) -> None:
    """Remove a document's vectors, its row and its kept original (unless another document has the same bytes).

    DocumentAccessError unless `actor` uploaded it or is an admin.
    """
    with Session(engine, expire_on_commit=False) as s:
        doc = s.get(Document, document_id)
        if doc is None:
            return
        if not may_change(doc.uploaded_by, actor):
            raise DocumentAccessError(f"Only the person who uploaded {doc.name} or an admin may delete it.")
        col = s.get_one(Collection, doc.collection_id)
    open_store(client, col.chroma_name, embeddings).delete(where={"document_id": document_id})
    with Session(engine, expire_on_commit=False) as s, s.begin():
        row = s.get(Document, document_id)
        if row is None:  # another delete may have come first
            return
        original = row.original_path
        s.delete(row)
    _remove_unshared_originals(engine, {original} if original else set())


def purge_orphan_chunks(engine: Engine, client: Any, embeddings: Embeddings) -> int:
    """Delete chunks that belong to no current document version (left by a crash); returns how many.

    Safe while other processes index (several app processes on one database and Chroma server): the chunks
    are read before the documents, and a document that is queued or indexing keeps its in-flight chunks
    (its job either finishes, or is recovered as failed and a later purge removes them).
    """
    removed = 0
    for col in list_collections(engine):
        store = open_store(client, col.chroma_name, embeddings)
        metas = get_all(store, ["metadatas"])  # before reading the documents: see the docstring
        with Session(engine, expire_on_commit=False) as s:
            rows = s.execute(
                select(Document.id, Document.version, Document.status).where(Document.collection_id == col.id)
            ).all()
        current = {doc_id: version for doc_id, version, _ in rows}
        busy = {doc_id for doc_id, _, status in rows if status in ("queued", "indexing")}
        stale = [
            i
            for i, m in zip(metas["ids"], metas["metadatas"])
            if m.get("document_id") not in busy and current.get(m.get("document_id")) != m.get("version")
        ]
        for start in range(0, len(stale), 5000):
            store.delete(ids=stale[start : start + 5000])
        removed += len(stale)
    return removed


def document_table(engine: Engine) -> list[dict[str, Any]]:
    """Rows for the document list: name, collection, pages, chunks, version, size, indexed at, status."""
    with Session(engine, expire_on_commit=False) as s:
        rows = s.execute(
            select(Document, Collection.name)
            .join(Collection, Collection.id == Document.collection_id)
            .order_by(Collection.name, Document.name)
        ).all()
    return [
        {
            "id": d.id,
            "name": d.name,
            "collection": c,
            "pages": d.pages,
            "chunks": d.chunks,
            "version": d.version,
            "size_kb": round(d.size_bytes / 1024, 1),
            "indexed_at": d.indexed_at,
            "status": d.status,
            "flagged": d.flagged_chunks,
            "error": d.error or "",
        }
        for d, c in rows
    ]


def document_choices(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows of `document_table` by the label a picker shows them under: `collection / name`."""
    return {f"{r['collection']} / {r['name']}": r for r in rows}


def read_original(engine: Engine, document_id: int) -> tuple[str, bytes]:
    """The name and bytes of a document's indexed original."""
    with Session(engine, expire_on_commit=False) as s:
        doc = s.get(Document, document_id)
    if doc is None or not doc.original_path or not Path(doc.original_path).exists():
        raise FileNotFoundError("The original of this document is not stored; upload it again.")
    return doc.name, Path(doc.original_path).read_bytes()
