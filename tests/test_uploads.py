"""Uploads and who may change a document: safe names, sizes checked before reading, uploader-or-admin rules."""

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.identity import Identity, local_identity
from lib.core.settings import load_settings
from lib.core.tables import Document
from lib.documents import indexing
from lib.documents.indexing import (
    ChunkingSettings,
    DocumentAccessError,
    Indexer,
    UploadError,
    claim_upload,
    claim_uploads,
    delete_collection,
    delete_document,
    get_collection,
)
from lib.documents.vectorstore import make_chroma_client

ADA = Identity("ada@example.com", "ada@example.com", frozenset({"staff"}), True, key="sub-ada")
BOB = Identity("bob@example.com", "bob@example.com", frozenset({"staff"}), True, key="sub-bob")
ADMIN = local_identity("admin")


@pytest.fixture
def indexer(data_dir, fresh_engine):
    client = make_chroma_client(load_settings())
    embeddings = DeterministicFakeEmbedding(size=16)
    return Indexer(fresh_engine, client, embeddings, data_dir / "originals", ChunkingSettings(200, 40, 2**20))


def upload(indexer: Indexer, who: Identity, name: str, data: bytes, replace: bool = False, collection: str = "HR"):
    col = get_collection(indexer.engine, collection, create=True)
    claim = claim_upload(indexer.engine, col, name, who, replace)
    return claim, indexer.index_file(col, claim.name, data)


def documents(engine) -> dict[str, str | None]:
    with Session(engine) as s:
        return {d.name: d.uploaded_by for d in s.scalars(select(Document))}


def test_the_same_name_from_another_user_becomes_a_new_document_and_the_first_stays(indexer):
    upload(indexer, ADA, "policy.txt", b"Ada's parking policy.")
    claim, outcome = upload(indexer, BOB, "policy.txt", b"Bob's replacement text.")
    assert (claim.name, claim.replaces, outcome.status) == ("policy (2).txt", False, "indexed")
    assert "another user's document" in claim.note()
    assert documents(indexer.engine) == {"policy.txt": "sub-ada", "policy (2).txt": "sub-bob"}
    with Session(indexer.engine) as s:
        ada_doc = s.scalar(select(Document).where(Document.name == "policy.txt"))
    assert ada_doc.version == 1  # untouched


def test_asking_to_replace_does_not_let_a_staff_member_replace_someone_elses_document(indexer):
    upload(indexer, ADA, "policy.txt", b"Ada's parking policy.")
    claim, _ = upload(indexer, BOB, "policy.txt", b"Bob's text.", replace=True)
    assert claim.name == "policy (2).txt" and not claim.replaces


def test_the_uploader_updates_their_own_document_and_an_admin_may_replace_anyones(indexer):
    upload(indexer, ADA, "policy.txt", b"Version one.")
    claim, outcome = upload(indexer, ADA, "policy.txt", b"Version two.")
    assert (claim.name, claim.replaces, outcome.version) == ("policy.txt", True, 2)
    claim, outcome = upload(indexer, ADMIN, "policy.txt", b"Version three, by an admin.", replace=True)
    assert (claim.name, claim.replaces, outcome.version) == ("policy.txt", True, 3)
    assert documents(indexer.engine) == {"policy.txt": "sub-ada"}


def test_only_the_uploader_or_an_admin_deletes_a_document_and_its_original_goes_with_it(indexer):
    _, outcome = upload(indexer, ADA, "policy.txt", b"Ada's parking policy.")
    with Session(indexer.engine) as s:
        original = s.get(Document, outcome.document_id).original_path
    assert original and (indexer.originals_dir / original.rsplit("/", 1)[-1]).exists()
    assert not indexing.may_change_document(indexer.engine, outcome.document_id, BOB)
    with pytest.raises(DocumentAccessError, match=r"Only the person who uploaded policy\.txt or an admin"):
        delete_document(indexer.engine, indexer.client, indexer.embeddings, outcome.document_id, BOB)
    assert documents(indexer.engine) == {"policy.txt": "sub-ada"}
    delete_document(indexer.engine, indexer.client, indexer.embeddings, outcome.document_id, ADA)
    assert documents(indexer.engine) == {}
    assert list(indexer.originals_dir.iterdir()) == []


def test_an_original_shared_by_two_documents_with_the_same_bytes_stays_until_the_last_goes(indexer):
    _, first = upload(indexer, ADA, "a.txt", b"The same bytes.")
    _, second = upload(indexer, ADA, "b.txt", b"The same bytes.")
    delete_document(indexer.engine, indexer.client, indexer.embeddings, first.document_id, ADA)
    assert len(list(indexer.originals_dir.iterdir())) == 1
    delete_document(indexer.engine, indexer.client, indexer.embeddings, second.document_id, ADMIN)
    assert list(indexer.originals_dir.iterdir()) == []


def test_a_collection_with_other_peoples_documents_is_deleted_only_by_an_admin(indexer):
    upload(indexer, ADA, "a.txt", b"Ada's.")
    upload(indexer, BOB, "b.txt", b"Bob's.")
    with pytest.raises(DocumentAccessError, match="only an admin"):
        delete_collection(indexer.engine, indexer.client, "HR", ADA)
    delete_collection(indexer.engine, indexer.client, "HR", ADMIN)
    assert documents(indexer.engine) == {} and list(indexer.originals_dir.iterdir()) == []


def test_sizes_are_checked_before_anything_is_read_or_claimed(indexer):
    col = get_collection(indexer.engine, "HR", create=True)
    uploads = [("small.txt", 10), ("huge.pdf", 60 * 2**20)]
    with pytest.raises(UploadError, match=r"huge.pdf is 60.0 MB, over the 50 MB limit"):
        claim_uploads(indexer.engine, col, uploads, ADA, False, 50 * 2**20)
    assert documents(indexer.engine) == {}


def test_uploaded_names_are_made_safe_and_a_name_with_nothing_visible_is_refused(indexer):
    col = get_collection(indexer.engine, "HR", create=True)
    [claim] = claim_uploads(indexer.engine, col, [("C:\\Users\\x\\..\\re\u202eport\u200b.pdf", 10)], ADA, False, 2**20)
    assert claim.name == "report.pdf"
    with pytest.raises(UploadError, match="no visible characters"):
        claim_uploads(indexer.engine, col, [("../\u200b\u202e", 10)], ADA, False, 2**20)
