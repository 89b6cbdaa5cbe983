"""Quality: FID, KID, precision, recall, density and coverage with intervals, overall and per group."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    findings_rows,
    page_store,
    pick_audit,
    quality_group_rows,
    quality_rows,
    table_height,
)

st.title("Quality")
st.caption(
    "How close the generated images are to real ones, measured on the judge's image features. FID and KID: "
    "distances between the two sets (lower is better). Precision: the share of generated images that look "
    "like some real image (fidelity); recall: the share of real variety the generator covers (diversity); "
    "density and coverage are sturdier versions of the two. low and high bound each number with the stated "
    "confidence (bootstrap over images)."
)
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
            st.caption(
                "The same metrics within each group the judge read (e.g. only the images judged 'circle'): "
                "a group with a much higher FID is drawn worse than the others. n_real and n_fake count "
                "the images compared; small groups give rough numbers."
            )
            st.dataframe(groups, hide_index=True, height=table_height(len(groups)))
    findings = findings_rows(data, prefix="quality.")
    if findings:
        st.subheader("Findings")
        st.caption(
            "The policy's verdict on each number: FAIL or WARN when it crosses the policy's threshold."
        )
        st.dataframe(findings, hide_index=True)
