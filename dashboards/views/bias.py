"""Bias: per scope, generated shares against the reference with intervals, and the bias findings."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import bias_summary, findings_rows, page_store, pick_audit, share_rows

st.title("Bias")
store = page_store()
picked = pick_audit(store) if store is not None else None
if picked is not None:
    audit_id, data, _ = picked
    scopes = data.get("bias", {}).get("scopes", {})
    if not scopes:
        st.info("This audit has no bias stage.")
    else:
        corrected = st.toggle(
            "Corrected for the judge's errors",
            value=True,
            key="corrected",
            help="Off: the shares as the judge read them (raw).",
        )
        which = "corrected" if corrected else "raw"
        st.subheader(f"Scopes ({which})")
        st.dataframe(bias_summary(data, corrected=corrected), hide_index=True)

        name = st.selectbox("Scope", list(scopes), key="scope")
        scope = scopes[name]
        st.text(
            f"{name}: {scope.get('kind', '')}, n = {scope.get('n')}, reference: "
            f"{scope.get('reference', {}).get('source', 'unknown')}"
        )
        rows = share_rows(scope, corrected=corrected)
        st.dataframe(rows, hide_index=True)
        chart = [{"value": r["value"], "generated": r["share"], "reference": r["reference"]} for r in rows]
        st.bar_chart(chart, x="value", y=["generated", "reference"], stack=False)
        power = scope.get("power", {}).get("message")
        if power:
            st.text(power)

    st.subheader("Findings")
    findings = findings_rows(data, prefix="bias.")
    if findings:
        st.dataframe(findings, hide_index=True)
    else:
        st.text("No bias findings.")
