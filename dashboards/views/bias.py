"""Bias: per scope, generated shares against the reference with intervals, a heat map of the gap within each
requested class (conditional generators), and the bias findings."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    bias_summary,
    condition_gap_rows,
    findings_rows,
    page_store,
    pick_audit,
    share_rows,
    table_height,
)

st.title("Bias")
st.caption(
    "Does the generator produce each group (a shape, a colour, ...) as often as the reference says it "
    "should? Groups are read on every generated image by the judge, a classifier with known error rates."
)
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
        st.caption(
            "tvd (total variation distance): the share of images that would have to change group "
            "for the generated mix to match the reference; 0 is a perfect match. tvd_low and tvd_high "
            "bound it with 95 % confidence (bootstrap, including the judge's own error). ratio: each "
            "group's generated share over its reference share, the lowest of these over the highest (1 is "
            "parity; below 0.8 fails the four-fifths rule). p_adjusted: the test of 'no difference', "
            "adjusted for testing many scopes (Benjamini-Hochberg); 'significant' marks the differences "
            "that survive that adjustment."
        )
        summary = bias_summary(data, corrected=corrected)
        st.dataframe(summary, hide_index=True, height=table_height(len(summary)))

        name = st.selectbox("Scope", list(scopes), key="scope")
        scope = scopes[name]
        st.text(
            f"{name}: {scope.get('kind', '')}, n = {scope.get('n')}, reference: "
            f"{scope.get('reference', {}).get('source', 'unknown')}"
        )
        rows = share_rows(scope, corrected=corrected)
        st.caption(
            "Each group's generated share with its 95 % interval (low, high), beside the reference share."
        )
        st.dataframe(rows, hide_index=True)
        chart = [{"value": r["value"], "generated": r["share"], "reference": r["reference"]} for r in rows]
        st.bar_chart(chart, x="value", y=["generated", "reference"], stack=False)
        power = scope.get("power", {}).get("message")
        if power:
            st.text(power)

        gaps = condition_gap_rows(data, corrected=corrected)
        if gaps:
            import altair as alt

            st.subheader("Within each requested class")
            st.caption(
                "The generator was asked for one class per image. Each cell is the gap (tvd) of an attribute "
                "among the images asked for that class: a dark cell is a class whose images skew that "
                "attribute, even where the overall mix looks fine."
            )
            base = alt.Chart(alt.Data(values=gaps)).encode(
                x=alt.X("attribute:N", title="attribute"),
                y=alt.Y("condition:N", title="requested class"),
            )
            heat = base.mark_rect().encode(
                color=alt.Color("tvd:Q", scale=alt.Scale(scheme="orangered"), title="tvd"),
                tooltip=["attribute:N", "condition:N", "n:Q", alt.Tooltip("tvd:Q", format=".3f")],
            )
            text = base.mark_text(fontSize=13).encode(text=alt.Text("tvd:Q", format=".3f"))
            classes = len({row["condition"] for row in gaps})
            st.altair_chart(heat + text, width="stretch", height=48 * classes + 60)

    st.subheader("Findings")
    st.caption(
        "The policy's verdict on each measured number: FAIL or WARN when it crosses the policy's threshold. "
        "The interval shows how sure the measurement is; one that straddles the threshold means more "
        "images would settle it."
    )
    findings = findings_rows(data, prefix="bias.")
    if findings:
        st.dataframe(findings, hide_index=True)
    else:
        st.text("No bias findings.")
