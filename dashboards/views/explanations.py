"""Explanations: attribution overlays for one explained sample, each method's quality verdict with its
reasons, and what in the generator's inputs drives each attribute (latent ranking and traversal)."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    VERDICT_TEXT,
    audit_image,
    check_rows,
    page_store,
    panel_cell,
    panel_grid,
    pick_audit,
    ranking_rows,
    sample_gallery,
)
from auditkit.errors import AuditKitError

VERDICT_HELP = (
    "How far to trust a method's maps, from checks run during the audit: TRUSTWORTHY passed them; "
    "QUESTIONABLE could not be told from chance on at least one; FAILED did worse than chance or ignored "
    "the model (its maps barely changed when the judge's weights were randomised). Read a FAILED method's "
    "overlay as decoration, not evidence."
)

st.title("Explanations")
st.caption(
    "Which pixels the judge relied on when it read an attribute on generated images (attribution maps), "
    "how far each method can be trusted, and which generator inputs steer each attribute."
)
store = page_store()
picked = pick_audit(store) if store is not None else None
explain = picked[1].get("explain") if picked is not None else None
if picked is not None and not explain:
    st.info("This audit has no explain stage (it was run without `explain` in its stages).")
if picked is not None and explain:
    audit_id, data, folder = picked
    attributes = list(explain.get("attributes", {}))
    attribute = st.selectbox("Attribute the judge read", attributes, key="attribute")
    entry = explain["attributes"][attribute]
    all_methods = list(explain.get("methods", entry.get("verdicts", {})))
    methods = st.multiselect("Methods", all_methods, default=all_methods, key="methods")

    st.subheader("Overlays")
    per_value = int(data.get("manifest", {}).get("config", {}).get("explain_per_value", 1))
    try:
        gallery = sample_gallery(store, audit_id, data)
    except AuditKitError:
        gallery = None  # the panel's own row labels still name the judged value
    rows = gallery.explanation_rows(attribute, per_value) if gallery is not None else []
    if len(rows) != entry.get("n"):
        rows = [{"row": i, "value": "?", "sample": None} for i in range(int(entry.get("n") or 0))]
    panel = audit_image(store, folder, entry.get("panel", ""))
    grid = panel_grid(panel, len(rows), 1 + len(all_methods)) if panel is not None and rows else None
    if panel is None:
        st.text("The explanation panel image is missing from the audit folder.")
    elif grid is None:
        st.caption("Every explained sample (rows) under every method (columns), as the audit drew them.")
        st.image(str(panel))
    else:
        labels = {
            r["row"]: f"judged {r['value']}"
            + (f" (sample #{r['sample']})" if r["sample"] is not None else "")
            for r in rows
        }
        row = st.selectbox("Sample", list(labels), format_func=labels.__getitem__, key="sample")
        st.caption(
            "Left: the generated image. Then one overlay per method, explaining the judge's score for the "
            f"value it read ({labels[row]}). Signed maps: red raises the score, blue lowers it; unsigned "
            "maps: brighter means more influence."
        )
        cells = st.columns(1 + max(len(methods), 1))
        cells[0].image(panel_cell(panel, grid, row, 0), caption="image", width=200)
        for slot, method in enumerate(methods, start=1):
            status = entry["verdicts"].get(method, {}).get("status", "")
            column = 1 + all_methods.index(method)
            caption = f"{method}: {VERDICT_TEXT.get(status, status)}"
            cells[slot].image(panel_cell(panel, grid, row, column), caption=caption, width=200)
        with st.expander("All explained samples of this attribute"):
            st.image(str(panel))

    st.subheader("How far to trust each method")
    st.caption(VERDICT_HELP)
    for method in methods:
        verdict = entry["verdicts"].get(method)
        if verdict is None:
            continue
        status = verdict.get("status", "")
        st.markdown(f"**{method}: {VERDICT_TEXT.get(status, status)}**")
        reasons = verdict.get("reasons") or []
        if reasons:
            st.markdown("\n".join(f"- {reason}" for reason in reasons), help=None)
        else:
            st.text("All checks passed.")
        with st.expander(f"{method}: check values"):
            st.dataframe(check_rows(verdict.get("checks", {})), hide_index=True)

    st.subheader("What in the generator drives this attribute")
    latent = explain.get("latent") or {}
    found = latent.get("attributes", {}).get(attribute)
    if latent.get("skipped"):
        st.text(f"Latent attribution was skipped: {latent['skipped']}")
    elif found is None:
        st.text("No latent attribution was stored for this attribute.")
    else:
        st.caption(
            "Each input of the generator (latent dimensions z[i] and the requested class) ranked by how "
            f"much it moves the judge's score for {attribute} (by {found.get('method')}"
            + (f"; the class by {found['condition_method']}" if found.get("condition_method") else "")
            + "). 'share' is its part of the total effect."
        )
        ranking = ranking_rows(found.get("ranking", []))
        st.dataframe(ranking, hide_index=True)
        st.bar_chart(ranking, x="input", y="share", horizontal=True, sort="-share")
        figure = audit_image(store, folder, found.get("figure", ""))
        if figure is not None:
            st.caption(
                f"Traversal: images made while sweeping the top input ({found.get('top_input')}) from −3 to "
                "+3, with the judge's reading under each and its probabilities on the right."
            )
            st.image(str(figure))
