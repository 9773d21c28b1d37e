"""Documents: upload into collections, watch indexing, manage documents, and try retrieval."""

import streamlit as st

from lib.documents import indexing, jobs
from lib.documents.citations import sources_table
from lib.documents.parsing import MB, SUPPORTED
from lib.documents.retrieval import MODES, RetrievalSettings
from lib.ui.jobs_view import job_panel
from lib.ui.resources import (
    current_user,
    get_chroma,
    get_document_embeddings,
    get_engine,
    get_retriever,
    get_settings,
    get_work_queue,
    require_page,
)
from lib.ui.untrusted import untrusted_label

identity = require_page("pages/documents.py")
settings, user = get_settings(), current_user()
engine = get_engine(settings)
st.title("Documents")

names = [c.name for c in indexing.list_collections(engine)]
with st.expander("Collections", expanded=not names, icon=":material/folder:"):
    c1, c2 = st.columns(2)
    new_name = c1.text_input("New collection", placeholder="e.g. HR policies")
    if c1.button("Create collection", disabled=not new_name):
        try:
            indexing.create_collection(engine, new_name, settings.embedding_model)
            st.rerun()
        except indexing.CollectionError as exc:
            st.error(untrusted_label(str(exc)))
    if names:
        target = c2.selectbox("Collection", names, key="manage_collection")
        renamed = c2.text_input("Rename to", key="rename_to")
        r1, r2 = c2.columns(2)
        if r1.button("Rename", disabled=not renamed):
            try:
                indexing.rename_collection(engine, target, renamed)
                st.rerun()
            except indexing.CollectionError as exc:
                st.error(untrusted_label(str(exc)))
        if r2.button("Delete collection", type="secondary"):
            try:
                indexing.delete_collection(engine, get_chroma(settings), target, identity)
                st.rerun()
            except indexing.DocumentAccessError as exc:
                st.error(untrusted_label(str(exc)))

if not names:
    st.info("Create a collection first, then upload documents into it.")
    st.stop()

st.subheader("Upload")
collection = st.selectbox("Into collection", names, key="upload_collection")
files = st.file_uploader("Files", type=[s.lstrip(".") for s in SUPPORTED], accept_multiple_files=True)
replace = "admin" in identity.roles and st.checkbox("Replace documents of the same name that others uploaded")
if st.button("Index", type="primary", disabled=not files, icon=":material/upload:"):
    target, limit = indexing.get_collection(engine, collection), int(settings.max_file_mb * MB)
    try:  # sizes are checked before any file is read; names are made safe and checked against other users'
        claims = indexing.claim_uploads(engine, target, [(f.name, f.size) for f in files], identity, replace, limit)
    except indexing.UploadError as exc:
        st.error(untrusted_label(str(exc)))
    else:
        payloads = [(c.name, f.getvalue()) for c, f in zip(claims, files)]
        jobs.start_job(engine, get_work_queue(settings), target, payloads, user)
        for note in filter(None, (c.note() for c in claims)):
            st.info(untrusted_label(note))
        st.toast(f"Indexing {len(payloads)} file(s) in the background.")

polling = jobs.jobs_in_progress(jobs.recent_jobs(engine, limit=5))


@st.fragment(run_every=1.0 if polling else None)  # polls only while a job is queued or running
def jobs_panel() -> None:
    recent = jobs.recent_jobs(engine, limit=5)
    if polling and not jobs.jobs_in_progress(recent):
        st.rerun()  # the last job finished: stop polling and show the new documents
    if not recent:
        return
    st.subheader("Indexing jobs")
    for job in recent:
        with st.container(border=True):
            panel = job_panel(job)
            st.caption(untrusted_label(panel.caption))
            for f in panel.rows:
                st.progress(f["fraction"], text=untrusted_label(f["label"]))
            if panel.cancel and st.button("Cancel", key=f"cancel_{job.id}", icon=":material/cancel:"):
                jobs.cancel_job(engine, job.id)
            if panel.retry and st.button("Retry failed files", key=f"retry_{job.id}", icon=":material/replay:"):
                try:
                    jobs.queue_retry(engine, get_work_queue(settings), job.id, user)
                    st.rerun()  # the whole page, so the panel polls the retried job
                except jobs.JobError as exc:
                    st.error(untrusted_label(str(exc)))


jobs_panel()

st.subheader("Documents")
rows = indexing.document_table(engine)
if rows:
    st.dataframe(
        rows,
        hide_index=True,
        use_container_width=True,
        column_config={
            "id": None,
            "indexed_at": st.column_config.DatetimeColumn("indexed at"),
            "error": st.column_config.TextColumn("reason", width="large"),
        },
    )
    by_label = indexing.document_choices(rows)
    chosen = by_label[st.selectbox("Document", list(by_label), key="doc_pick")]
    d1, d2, d3 = st.columns(3)
    try:
        name, data = indexing.read_original(engine, chosen["id"])
        d1.download_button("Download original", data, file_name=name, icon=":material/download:")
    except FileNotFoundError as exc:
        d1.caption(str(exc))
        data = None
    if d2.button("Re-index", disabled=data is None, icon=":material/refresh:"):
        try:
            jobs.queue_reindex(engine, get_work_queue(settings), chosen["id"], user)
            st.rerun()  # so the jobs panel polls the new job
        except (jobs.JobError, FileNotFoundError) as exc:
            st.error(untrusted_label(str(exc)))
    allowed = indexing.may_change_document(engine, chosen["id"], identity)
    why = None if allowed else "Only the person who uploaded it or an admin may delete it."
    if d3.button("Delete document", disabled=not allowed, help=why, icon=":material/delete:"):
        embeddings = get_document_embeddings(settings)
        indexing.delete_document(engine, get_chroma(settings), embeddings, chosen["id"], identity)
        st.rerun()
else:
    st.caption("No documents yet.")

st.subheader("Test retrieval")
q1, q2, q3 = st.columns([3, 1, 1])
query = q1.text_input("Query", key="test_query")
mode = q2.selectbox("Mode", MODES, index=MODES.index(settings.search_mode))
k = q3.number_input("Top k", 1, 50, settings.top_k)
search_in = st.selectbox("Collection to search", names, key="test_collection")
if query:
    hits = get_retriever(settings).search(
        search_in, query, RetrievalSettings(k=int(k), mode=mode, vector_weight=settings.hybrid_weight)
    )
    st.dataframe(sources_table(hits), hide_index=True, use_container_width=True)
