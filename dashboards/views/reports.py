"""Reports: downloads (rendered on demand, cached), integrity of shipped reports, and reviewer sign-off."""

from __future__ import annotations

import functools

import streamlit as st

from auditkit.dashboard import REPORT_FORMATS, page_store, pick_audit, render_cached, verify_status
from auditkit.errors import AuditKitError
from auditkit.report import add_signoff, load_signoffs

st.title("Reports")
store = page_store()
picked = pick_audit(store) if store is not None else None
if picked is not None:
    audit_id, data, folder = picked
    st.text(f"Verdict: {data.get('verdict', '?')}")

    st.subheader("Download")
    st.caption(
        "The audit as a document for a governance review: HTML or PDF report, the raw JSON result, or a "
        "model card (Markdown). Each is rendered when clicked."
    )
    for column, (fmt, (filename, mime)) in zip(
        st.columns(len(REPORT_FORMATS)), REPORT_FORMATS.items(), strict=True
    ):
        # A callable defers rendering (PDF takes seconds) to the click; render_cached keys on hashes.
        column.download_button(
            fmt.upper(),
            data=functools.partial(render_cached, folder, fmt),
            file_name=f"{audit_id}-{filename}",
            mime=mime,
            key=f"download_{fmt}",
        )

    st.subheader("Integrity")
    st.caption(
        "A sealed report folder carries a manifest of SHA-256 hashes; ok means no file changed since it was "
        "sealed (the same check as `auditkit verify`)."
    )
    checks = verify_status(store, folder)
    if checks:
        st.dataframe(checks, hide_index=True)
    else:
        st.text("No manifest.json: this audit's reports were not sealed (`auditkit report` writes one).")

    st.subheader("Sign-off")
    st.caption(
        "A reviewer's decision, recorded beside the audit and printed in every report made afterwards."
    )
    with st.form("signoff", clear_on_submit=True):
        reviewer = st.text_input("Reviewer")
        role = st.text_input("Role")
        decision = st.selectbox("Decision", ["approve", "conditional", "reject"])
        comment = st.text_area("Comment")
        submitted = st.form_submit_button("Sign")
    if submitted:
        try:
            add_signoff(folder, reviewer=reviewer, role=role, decision=decision, comment=comment)
        except AuditKitError as exc:
            st.error(str(exc))
        else:
            st.success("Signed.")
    signoffs = load_signoffs(folder)
    if signoffs:
        st.dataframe(signoffs, hide_index=True)
    else:
        st.text("No sign-offs yet.")
