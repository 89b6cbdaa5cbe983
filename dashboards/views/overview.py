"""Overview: every run and audit in the store, with filters and a count of verdicts."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import audits_table, dashboard_home, page_store, runs_table, verdict_counts

st.title("Overview")
st.caption(
    f"Everything in the store {dashboard_home()}: audits with their verdicts, and the training and "
    "sampling runs. An audit's verdict is its worst finding: PASS, WARN (look closer) or FAIL (a policy "
    "threshold is crossed); open the Bias, Quality and Explanations pages for the evidence."
)
store = page_store()
if store is not None:
    runs, audits = runs_table(store), audits_table(store)

    st.subheader("Audits")
    counts = verdict_counts(audits)
    for column, (verdict, count) in zip(
        st.columns(max(len(counts), 1)), sorted(counts.items()), strict=False
    ):
        column.metric(f"verdict: {verdict}", count)
    verdicts = sorted({row["verdict"] or "none" for row in audits})
    chosen = st.multiselect("Verdict", verdicts, default=verdicts, key="verdict_filter")
    st.dataframe([row for row in audits if (row["verdict"] or "none") in chosen], hide_index=True)

    st.subheader("Runs")
    kinds = sorted({row["kind"] for row in runs})
    chosen_kinds = st.multiselect("Kind", kinds, default=kinds, key="kind_filter")
    shown = [row for row in runs if row["kind"] in chosen_kinds]
    if shown:
        st.dataframe(shown, hide_index=True)
    else:
        st.text("No runs match." if runs else "No training or sampling runs in this store.")
