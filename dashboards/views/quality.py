"""Quality: FID, KID, precision, recall, density and coverage with intervals, overall and per group."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import findings_rows, page_store, pick_audit, quality_group_rows, quality_rows

st.title("Quality")
store = page_store()
picked = pick_audit(store) if store is not None else None
if picked is not None:
    audit_id, data, _ = picked
    rows = quality_rows(data)
    if not rows:
        st.info("This audit has no quality stage.")
    else:
        quality = data["quality"]
        st.text(
            f"Features: {quality.get('features', '?')}; {quality.get('n_real')} real and "
            f"{quality.get('n_fake')} generated images."
        )
        st.dataframe(rows, hide_index=True)
        groups = quality_group_rows(data)
        if groups:
            st.subheader("Per group")
            st.dataframe(groups, hide_index=True)
    findings = findings_rows(data, prefix="quality.")
    if findings:
        st.subheader("Findings")
        st.dataframe(findings, hide_index=True)
